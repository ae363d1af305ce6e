//! Delivery throughput of one and of two `sipsimd` nodes, measured in one run, for docs/SCALING.md.
//!
//! ```sh
//! cargo build --release --bin sipsimd --example cluster_load
//! SIPSIM_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   target/release/examples/cluster_load [EVENTS] [RUNS]
//! ```
//!
//! For each setup (SQLite, one node; PostgreSQL, one node; PostgreSQL, two nodes) and each run: a
//! fresh database, 20 accounts whose integrations point at one local receiver (answers 200 at once),
//! EVENTS `sms` events ingested in batches of 100 through the nodes in turn (8 requests at a time),
//! and the time from the first ingest request to the receiver's last new event. It prints the median
//! events/s of each setup, its ratio to the SQLite single node measured in the same run, and the
//! whole machine's CPU time per delivered event (from /proc/stat: every process, PostgreSQL too).

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "cluster-load-ingest-key-0123";
const ACCOUNTS: usize = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    sipsim_delivery::install_crypto_provider();
    let sipsimd = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("sipsimd"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!("build sipsimd first: cargo build --release --bin sipsimd")
        })?;

    // One receiver for every run; it counts requests.
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let app = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let setups: [(&str, bool, usize); 3] = [
        ("sqlite, 1 node", false, 1),
        ("postgres, 1 node", true, 1),
        ("postgres, 2 nodes", true, 2),
    ];
    let mut results = Vec::new();
    for (name, postgres, nodes) in setups {
        let mut rates = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..runs {
            let (rate, cpu_ms) =
                run(&sipsimd, &receiver, &received, postgres, nodes, events).await?;
            rates.push(rate);
            cpu.push(cpu_ms);
        }
        results.push((name, median(&mut rates), median(&mut cpu)));
    }
    let baseline = results[0].1;
    println!("{events} events per run, {runs} runs each, medians:");
    println!("{:<20} {:>12} {:>10} {:>16}", "setup", "events/s", "vs sqlite", "CPU ms / event");
    let mut report = Vec::new();
    for (name, rate, cpu) in &results {
        println!("{name:<20} {rate:>12.0} {:>10.2} {cpu:>16.3}", rate / baseline);
        report.push(json!({ "setup": name, "events_per_s": rate.round(), "ratio_to_sqlite": rate / baseline, "cpu_ms_per_event": cpu }));
    }
    println!("{}", json!({ "events": events, "runs": runs, "results": report }));
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Node(Child, String);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(sipsimd: &std::path::Path, url: &str) -> anyhow::Result<Node> {
    let serving = sipsim_testkit::process::spawn_serving(
        Command::new(sipsimd)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("SIPSIM_DATABASE_URL", url)
            .env("SIPSIM_INGEST_KEY", KEY)
            .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
            .env("RUST_LOG", "info"),
    )?;
    Ok(Node(serving.child, format!("http://{}", serving.addr)))
}

fn operator(sipsimd: &std::path::Path, url: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(sipsimd)
        .args(args)
        .arg("--json")
        .env("SIPSIM_DATABASE_URL", url)
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
        .output()?;
    anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// One run: returns delivered events/s and machine CPU ms per event.
async fn run(
    sipsimd: &std::path::Path,
    receiver: &str,
    received: &AtomicUsize,
    postgres: bool,
    nodes: usize,
    events: usize,
) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let pg = if postgres {
        Some(
            sipsim_store::testing::postgres_test_db("cluster_load")
                .await
                .ok_or_else(|| anyhow::anyhow!("set SIPSIM_TEST_POSTGRES_URL"))?,
        )
    } else {
        None
    };
    let url = match &pg {
        Some(db) => db.url().to_owned(),
        None => format!("sqlite://{}", dir.path().join("load.db").display()),
    };
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let account =
            operator(sipsimd, &url, &["account", "create", &format!("Load {i}")])?["account_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        let set =
            ["integration", "set", "--account", &account, "--url", receiver, "--events", "sms"];
        operator(sipsimd, &url, &set)?;
        accounts.push(account);
    }
    let started: Vec<Node> = (0..nodes).map(|_| start(sipsimd, &url)).collect::<Result<_, _>>()?;
    let http = reqwest::Client::new();
    let payload: Value =
        serde_json::from_str(sipsim_core::payload::example_json(sipsim_core::Event::Sms))?;
    let before = received.load(Ordering::Relaxed);
    let busy0 = sipsim_testkit::process::machine_busy_ticks();
    let t0 = Instant::now();
    let batches: Vec<Vec<Value>> = (0..events)
        .collect::<Vec<_>>()
        .chunks(100)
        .map(|chunk| {
            chunk
                .iter()
                .map(|i| json!({ "account_id": accounts[i % ACCOUNTS], "event": "sms", "payload": payload }))
                .collect()
        })
        .collect();
    // 8 ingest requests in flight, spread over the nodes in turn.
    let bases: Vec<String> = started.iter().map(|n| n.1.clone()).collect();
    let mut pending = futures_in_flight(&http, &bases, batches, 8).await?;
    pending.sort_unstable();
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) - before < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let busy1 = sipsim_testkit::process::machine_busy_ticks();
    let delivered = received.load(Ordering::Relaxed) - before;
    anyhow::ensure!(delivered >= events, "only {delivered} of {events} delivered");
    drop(started);
    if let Some(db) = pg {
        db.drop_database().await;
    }
    let ticks_per_ms = 100.0 / 1000.0; // USER_HZ = 100
    Ok((events as f64 / elapsed, (busy1 - busy0) as f64 / ticks_per_ms / events as f64))
}

/// Posts every batch, at most `width` at a time, round-robin over `bases`; returns the statuses.
async fn futures_in_flight(
    http: &reqwest::Client,
    bases: &[String],
    batches: Vec<Vec<Value>>,
    width: usize,
) -> anyhow::Result<Vec<u16>> {
    let mut set = tokio::task::JoinSet::new();
    let mut statuses = Vec::new();
    for (i, batch) in batches.into_iter().enumerate() {
        if set.len() >= width
            && let Some(done) = set.join_next().await
        {
            statuses.push(done??);
        }
        let request = http
            .post(format!("{}/internal/v1/events", bases[i % bases.len()]))
            .bearer_auth(KEY)
            .json(&batch);
        set.spawn(async move {
            let status = request.send().await?.status().as_u16();
            anyhow::ensure!(status == 202, "ingest answered {status}");
            Ok::<u16, anyhow::Error>(status)
        });
    }
    while let Some(done) = set.join_next().await {
        statuses.push(done??);
    }
    Ok(statuses)
}
