//! Processes under test (the real `sipsimd`, the baseline server) and what /proc says about them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};

use serde_json::Value;

/// The ingest key every benchmark node gets.
pub const INGEST_KEY: &str = "bench-ingest-key-0123456789";

/// A child process serving HTTP; killed when dropped.
#[derive(Debug)]
pub struct Served {
    child: Child,
    pub addr: SocketAddr,
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM`).
    pub fn rss_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// CPU time this process has used (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        sipsim_testkit::process::process_ticks(self.pid())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command`, whose stderr announces `listen=ADDR`, and waits for that line.
fn serve(mut command: Command) -> anyhow::Result<Served> {
    let serving = sipsim_testkit::process::spawn_serving(&mut command)?;
    Ok(Served { child: serving.child, addr: serving.addr })
}

/// `sipsimd serve` on `database`, with the API rate limit off, as the benchmarks run it.
pub fn sipsimd(
    binary: &Path,
    database: &str,
    extra_env: &[(&str, &str)],
) -> anyhow::Result<Served> {
    let mut command = Command::new(binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SIPSIM_DATABASE_URL", database)
        .env("SIPSIM_INGEST_KEY", INGEST_KEY)
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
        .env("SIPSIM_API_RATE_LIMIT", "0")
        .env("SIPSIM_TOKEN_RATE_LIMIT", "0")
        .env("RUST_LOG", "info");
    for (k, v) in extra_env {
        command.env(k, v);
    }
    serve(command)
}

/// The baseline: this very binary's `baseline-serve`, a trivial axum handler.
pub fn baseline() -> anyhow::Result<Served> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("baseline-serve");
    serve(command)
}

/// Runs an operator command with `--json` and returns what it printed.
pub fn operator(binary: &Path, database: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(binary)
        .args(args)
        .arg("--json")
        .env("SIPSIM_DATABASE_URL", database)
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "sipsimd {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Milliseconds per clock tick (`USER_HZ` is 100 on Linux).
pub const MS_PER_TICK: f64 = 10.0;
