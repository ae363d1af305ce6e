//! `sipsim-bench`: the benchmark harness (docs/BENCHMARKS.md).
//!
//! It starts the real `sipsimd` (release build beside this binary, or `--sipsimd`), a local receiver
//! and a load generator, measures each figure of docs/BENCHMARKS.md against a baseline taken in the
//! same run, and prints a table and one JSON object. `--quick` is the smoke run `.ci/run` does:
//! seconds, small sizes, the same code paths, no thresholds enforced.

mod fixture;
mod load;
mod mix;
mod node;
mod receiver;
mod report;
mod scenarios;
mod store_ingest;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::fixture::Backend;
use crate::mix::Mix;
use crate::report::Check;
use crate::scenarios::{Ctx, Feed, Load, Section};

#[derive(Debug, Parser)]
#[command(
    name = "sipsim-bench",
    about = "Benchmarks sipsimd against baselines measured in the same run."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A smoke run: seconds, small sizes, one run each; thresholds are not enforced.
    #[arg(long)]
    quick: bool,
    /// Runs per measurement (the figures are medians). Default 3, or 1 with --quick.
    #[arg(long)]
    runs: Option<usize>,
    /// Only these measurements, comma-separated: api, throughput, ingest, latency, isolation, growth.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these backends, comma-separated: sqlite, postgres (default: both when --postgres is given).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
    /// The sipsimd binary (default: the one beside this binary).
    #[arg(long)]
    sipsimd: Option<PathBuf>,
    /// A PostgreSQL server to make databases on; without it the PostgreSQL figures are skipped.
    #[arg(long, env = "SIPSIM_TEST_POSTGRES_URL")]
    postgres: Option<String>,
    /// Where to write results.json and chart.svg.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where criterion wrote the micro-benchmarks' results (`cargo bench -p sipsim-bench`), to
    /// include them.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// Events/s of the end-to-end latency runs (default 500, the issue's; 200 with --quick).
    #[arg(long)]
    latency_rate: Option<f64>,
    /// Exit non-zero when a target is missed (full runs only).
    #[arg(long)]
    strict: bool,
    /// Only the throughput loads whose label contains one of these, separated by `;` (e.g.
    /// "call events, batches of 1,000, 20;sms").
    #[arg(long, value_delimiter = ';')]
    loads: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The baseline: a trivial axum handler for `GET /api/v2/webhooks` (run by the harness itself).
    #[command(hide = true)]
    BaselineServe,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Some(Command::BaselineServe) => runtime.block_on(baseline_serve()),
        None => runtime.block_on(bench(cli)),
    }
}

/// What `GET /api/v2/webhooks` answers for an integration subscribed to one event, byte for byte
/// the same shape and size as sipsimd's, so the baseline moves the same bytes.
const BASELINE_BODY: &str = r#"{"success":true,"data":[{"event":"sms","enabled":true}],"errors":[],"request_id":"req_00000000000000000000000000"}"#;

async fn baseline_serve() -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/api/v2/webhooks",
        axum::routing::get(|| async {
            ([(axum::http::header::CONTENT_TYPE, "application/json")], BASELINE_BODY)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    eprintln!("baseline listen={}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn sipsimd_beside_us() -> Option<PathBuf> {
    std::env::current_exe().ok()?.parent().map(|dir| dir.join("sipsimd")).filter(|p| p.exists())
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    let sipsimd = cli.sipsimd.clone().or_else(sipsimd_beside_us).ok_or_else(|| {
        anyhow::anyhow!("no sipsimd beside this binary: cargo build --release -p sipsim-server, or pass --sipsimd")
    })?;
    if let Some(url) = &cli.postgres {
        // SAFETY: set before any other thread of ours reads the environment.
        unsafe { std::env::set_var(sipsim_store::testing::URL_VAR, url) };
    }
    let ctx = Ctx {
        sipsimd: sipsimd.clone(),
        receiver: receiver::Receiver::start().await?,
        quick: cli.quick,
        runs: cli.runs.unwrap_or(if cli.quick { 1 } else { 3 }),
        latency_rate: cli.latency_rate,
    };
    let wanted = |name: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == name);
    let backend_wanted =
        |b: Backend| cli.backends.is_empty() || cli.backends.iter().any(|n| n == b.name());
    let mut backends: Vec<Backend> =
        [Backend::Sqlite].into_iter().filter(|b| backend_wanted(*b)).collect();
    if cli.postgres.is_none() {
        eprintln!(
            "no --postgres (or SIPSIM_TEST_POSTGRES_URL): the PostgreSQL figures are skipped"
        );
    } else if backend_wanted(Backend::Postgres) {
        backends.push(Backend::Postgres);
    }
    let mut sections: Vec<(String, Section)> = Vec::new();
    let step = |name: String| {
        eprintln!("[{:>6.1}s] {name}…", started().elapsed().as_secs_f64());
        name
    };
    for &backend in &backends {
        if wanted("api") {
            let name = step(format!("api/{}", backend.name()));
            sections.push((name, scenarios::api(&ctx, backend).await?));
        }
    }
    for &backend in &backends {
        if wanted("throughput") {
            let (mut calls, mut sms) = (None, None);
            let chosen = Load::ALL.into_iter().filter(|l| {
                cli.loads.is_empty() || cli.loads.iter().any(|f| l.label().contains(f.as_str()))
            });
            for load in chosen {
                let name = step(format!("throughput/{}/{}", backend.name(), load.label()));
                let section = scenarios::throughput(&ctx, backend, load).await?;
                if load.feed == Feed::Batched && load.accounts == 20 {
                    match load.mix {
                        Mix::Calls => calls = Some(sections.len()),
                        Mix::Sms => sms = Some(sections.len()),
                        Mix::Sipsim => {}
                    }
                }
                sections.push((name, section));
            }
            if let (Some(calls), Some(sms)) = (calls, sms) {
                let checks =
                    scenarios::ordering_cost(backend, &sections[calls].1, &sections[sms].1);
                let section = Section { checks, json: Value::Null };
                sections.push((format!("ordering-cost/{}", backend.name()), section));
            }
        }
    }
    for scenario in ["ingest", "latency", "isolation", "growth"] {
        for &backend in backends.iter().filter(|_| wanted(scenario)) {
            let name = step(format!("{scenario}/{}", backend.name()));
            let section = match scenario {
                "ingest" => store_ingest::store_ingest(&ctx, backend).await?,
                "latency" => scenarios::latency(&ctx, backend).await?,
                "isolation" => scenarios::isolation(&ctx, backend).await?,
                _ => scenarios::growth(&ctx, backend).await?,
            };
            sections.push((name, section));
        }
    }

    let mut checks: Vec<Check> = sections.iter().flat_map(|(_, s)| s.checks.clone()).collect();
    let micro = criterion_results(&cli.criterion);
    checks.extend(micro.iter().cloned());
    let machine = machine();
    let result = json!({
        "quick": cli.quick,
        "runs": ctx.runs,
        "machine": machine,
        "settings": {
            "api_rate_limit": "off (SIPSIM_API_RATE_LIMIT=0)",
            "sqlite": "WAL, synchronous=NORMAL (the default)",
            "postgres": "synchronous_commit=on (the server's default)",
            "load_generator": "in-process hyper HTTP/1.1 client, keep-alive, one request in flight per connection",
        },
        "checks": checks.iter().map(Check::to_json).collect::<Vec<_>>(),
        "sections": sections.iter().map(|(name, s)| json!({ "name": name, "detail": s.json })).collect::<Vec<_>>(),
    });
    println!("{}", report::table(&checks));
    println!("{}", serde_json::to_string(&result)?);
    if let Some(dir) = &cli.out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&result)? + "\n")?;
        let title = format!(
            "sipsim-bench{} — {}",
            if cli.quick { " (smoke run)" } else { "" },
            machine["cpu"].as_str().unwrap_or("this machine")
        );
        std::fs::write(dir.join("chart.svg"), report::chart(&checks, &title))?;
        eprintln!(
            "wrote {} and {}",
            dir.join("results.json").display(),
            dir.join("chart.svg").display()
        );
    }
    let missed: Vec<&str> =
        checks.iter().filter(|c| c.met() == Some(false)).map(|c| c.name.as_str()).collect();
    if !missed.is_empty() {
        eprintln!("targets missed: {}", missed.join("; "));
        if cli.strict && !cli.quick {
            anyhow::bail!("{} targets missed", missed.len());
        }
    }
    Ok(())
}

fn started() -> &'static std::time::Instant {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    STARTED.get_or_init(std::time::Instant::now)
}

/// The machine, as the results should say.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: Option<u64> = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "memory_gib": mem_kib.map(|k| (k as f64 / 1024.0 / 1024.0).round()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
    })
}

/// The micro-benchmarks' medians, from criterion's `estimates.json` files, when they have been run:
/// each ours against its baseline in the same group (`…/ours` vs `…/baseline`).
fn criterion_results(dir: &Path) -> Vec<Check> {
    let median_ns = |group: &str, bench: &str| -> Option<f64> {
        let path = dir.join(group).join(bench).join("new").join("estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    let mut checks = Vec::new();
    for (group, what) in [
        ("sign", "signing a delivery (both headers)"),
        ("payload", "validating + serialising a payload"),
        ("jwt", "verifying an access token"),
    ] {
        if let Some(ours) = median_ns(group, "ours") {
            let context = match median_ns(group, "baseline") {
                Some(base) => format!("{what}; {:.2}× its baseline ({base:.0} ns)", ours / base),
                None => what.to_owned(),
            };
            checks.push(Check::info(format!("micro: {group}"), ours / 1000.0, "µs", context));
        }
    }
    checks
}
