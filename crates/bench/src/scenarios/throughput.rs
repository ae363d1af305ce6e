//! Throughput: events accepted and delivered per second, by feed and mix; the cost of order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{self, Backend};
use crate::load::{self, Call, Stop};
use crate::mix::{self, Mix};
use crate::node::{self};
use crate::receiver::Receiver;
use crate::report::{Check, Cmp};

use super::common::*;

/// How events enter in a throughput run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// One event per ingest request, 64 connections.
    Single,
    /// 1,000 events per request, 4 requests in flight.
    Batched,
}

/// One throughput measurement: what is sent, how, and to how many accounts.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub mix: Mix,
    pub feed: Feed,
    pub accounts: usize,
}

impl Load {
    /// The runs the harness makes: the SIPSIM mix both ways (the headline), call events alone over
    /// 20 accounts and for one account, and SMS alone (the unordered path, for the cost ratio).
    pub const ALL: [Load; 6] = [
        Load { mix: Mix::Sipsim, feed: Feed::Single, accounts: 20 },
        Load { mix: Mix::Sipsim, feed: Feed::Batched, accounts: 20 },
        Load { mix: Mix::Calls, feed: Feed::Batched, accounts: 20 },
        Load { mix: Mix::Calls, feed: Feed::Batched, accounts: 1 },
        Load { mix: Mix::Sms, feed: Feed::Batched, accounts: 20 },
        Load { mix: Mix::Sipsim, feed: Feed::Batched, accounts: 1 },
    ];

    pub fn label(self) -> String {
        let feed = match self.feed {
            Feed::Single => "single-event",
            Feed::Batched => "batches of 1,000",
        };
        let accounts = match self.accounts {
            1 => "one account".to_owned(),
            n => format!("{n} accounts"),
        };
        format!("{}, {feed}, {accounts}", self.mix.name())
    }

    /// The target for this load on `backend`, deliveries/s.
    fn target(self, backend: Backend) -> Option<f64> {
        let sqlite = backend == Backend::Sqlite;
        match (self.mix, self.feed, self.accounts) {
            (Mix::Sipsim | Mix::Calls, Feed::Batched, 20) => {
                Some(if sqlite { 8_000.0 } else { 4_000.0 })
            }
            (Mix::Calls, Feed::Batched, 1) => Some(if sqlite { 3_000.0 } else { 2_000.0 }),
            (Mix::Sipsim, Feed::Single, _) => Some(if sqlite { 3_000.0 } else { 2_500.0 }),
            _ => None,
        }
    }
}

/// 2 and 6: ingest → 2xx at the receiver, the machine's CPU per delivery, and the node's peak RSS.
pub async fn throughput(ctx: &Ctx, backend: Backend, load: Load) -> anyhow::Result<Section> {
    let urls = ok_urls(&ctx.receiver, load.accounts);
    let (db, served, accounts) = node(ctx, backend, &urls).await?;
    // One account gets a fifth of the events: a backlog of 20,000 is already minutes of its traffic.
    let (events, connections, per_request) = match (load.feed, load.accounts) {
        (Feed::Single, _) => (ctx.size(30_000, 300), 64, 1),
        (Feed::Batched, 1) => (ctx.size(20_000, 1_000), 4, 1_000),
        (Feed::Batched, _) => (ctx.size(100_000, 2_000), 4, 1_000),
    };
    // Warm up: every integration's connection pool, the store's caches.
    let warm = mix::items(load.mix, &accounts, 200.max(load.accounts * 10), 0);
    let before = ctx.receiver.ok_count();
    send_all(served.addr, &mix::batches(&warm, 100), 2).await?;
    ctx.receiver
        .wait_for(before + warm.len() as u64, Duration::from_secs(60), Receiver::ok_count)
        .await
        .ok_or_else(|| anyhow::anyhow!("warm-up deliveries never arrived"))?;

    let mut runs = Vec::new();
    let mut ordered = 0.0;
    for run in 0..ctx.runs {
        // Fresh calls each run (a call's events are ordered behind its earlier ones).
        let items = mix::items(load.mix, &accounts, events, run as u64 + 1);
        ordered = mix::ordered_share(&items);
        let bodies = mix::batches(&items, per_request);
        let before = ctx.receiver.ok_count();
        let (busy0, own0) = (sipsim_testkit::process::machine_busy_ticks(), served.cpu_ticks());
        let t0 = Instant::now();
        let hits = send_all(served.addr, &bodies, connections).await?;
        let ingested = t0.elapsed();
        let (ingest_rate, _) = rate_of(&hits, 202)?;
        let done = ctx
            .receiver
            .wait_for(before + events as u64, Duration::from_secs(600), Receiver::ok_count)
            .await
            .ok_or_else(|| {
                anyhow::anyhow!("only {} of {events} delivered", ctx.receiver.ok_count() - before)
            })?;
        let secs = done.duration_since(t0).as_secs_f64();
        let (busy1, own1) = (sipsim_testkit::process::machine_busy_ticks(), served.cpu_ticks());
        runs.push(json!({
            "deliveries_per_s": events as f64 / secs,
            "ingest_requests_per_s": ingest_rate,
            "ingest_seconds": ingested.as_secs_f64(),
            "ingest_events_per_s": events as f64 / ingested.as_secs_f64(),
            "seconds": secs,
            "machine_cpu_ms_per_delivery": (busy1 - busy0) as f64 * node::MS_PER_TICK / events as f64,
            "sipsimd_cpu_ms_per_delivery": (own1 - own0) as f64 * node::MS_PER_TICK / events as f64,
        }));
    }
    let (_, peak_kib) = served.rss_kib();
    // The receiver's own rate, driven directly by the same generator: the ceiling on this machine.
    let receiver_rps = {
        let payload = Arc::new(fixture::sms_payload());
        let hits = load::closed_loop(
            ctx.receiver.addr,
            64,
            Stop::After(ctx.size(Duration::from_secs(3), Duration::from_millis(300))),
            false,
            Arc::new(move |_| Call::post_json("/ok/0", None, payload.as_bytes().to_vec())),
        )
        .await?;
        rate_of(&hits, 200)?.0
    };
    drop(served);
    db.remove().await;
    let b = backend.name();
    let rate = medians(&runs, "deliveries_per_s");
    let cpu = medians(&runs, "machine_cpu_ms_per_delivery");
    let label = load.label();
    let mut delivered = Check::info(
        format!("delivery {b}: {label}"),
        rate,
        "/s",
        format!(
            "ingest alone {:.0}/s; {:.0} % ordered; {:.2}× the receiver's own {:.0} req/s; Svix here: 575–660/s",
            medians(&runs, "ingest_events_per_s"),
            ordered * 100.0,
            rate / receiver_rps,
            receiver_rps
        ),
    );
    if let Some(t) = load.target(backend) {
        delivered = delivered.target(Cmp::AtLeast, t);
    }
    let mut checks = vec![delivered];
    // CPU and memory for the headline batched run and the call-events run.
    if load.feed == Feed::Batched && load.accounts > 1 && load.mix != Mix::Sms {
        let cpu_target = if backend == Backend::Sqlite { 0.3 } else { 0.4 };
        checks.push(
            Check::info(
                format!("delivery {b}: {label}: machine CPU"),
                cpu,
                "ms/deliv",
                format!(
                    "sipsimd itself {:.3} ms; Svix here: 2.6–3.3 ms",
                    medians(&runs, "sipsimd_cpu_ms_per_delivery")
                ),
            )
            .target(Cmp::AtMost, cpu_target),
        );
        checks.push(
            Check::info(
                format!("memory {b}: peak RSS ({label})"),
                peak_kib as f64 / 1024.0,
                "MB",
                "sipsimd VmHWM after the runs",
            )
            .target(Cmp::AtMost, 100.0),
        );
    }
    Ok(Section {
        checks,
        json: json!({ "backend": b, "load": label, "events": events, "connections": connections, "accounts": load.accounts, "ordered_share": ordered, "receiver_rps": receiver_rps, "peak_rss_kib": peak_kib, "runs": runs }),
    })
}

/// Ordered ÷ unordered: what a call event costs against an SMS, batched over 20 accounts, for
/// ingest alone and end to end (cost = 1 / rate).
pub fn ordering_cost(backend: Backend, calls: &Section, sms: &Section) -> Vec<Check> {
    let of = |s: &Section, key: &str| {
        medians(s.json["runs"].as_array().map(Vec::as_slice).unwrap_or_default(), key)
    };
    let b = backend.name();
    let ingest = of(sms, "ingest_events_per_s") / of(calls, "ingest_events_per_s");
    let delivery = of(sms, "deliveries_per_s") / of(calls, "deliveries_per_s");
    vec![
        Check::info(
            format!("ordered ÷ unordered {b}: ingest cost"),
            ingest,
            "×",
            format!(
                "call events {:.0}/s vs sms {:.0}/s ingested",
                of(calls, "ingest_events_per_s"),
                of(sms, "ingest_events_per_s")
            ),
        )
        .target(Cmp::AtMost, 1.3),
        Check::info(
            format!("ordered ÷ unordered {b}: delivery cost"),
            delivery,
            "×",
            format!(
                "call events {:.0}/s vs sms {:.0}/s delivered",
                of(calls, "deliveries_per_s"),
                of(sms, "deliveries_per_s")
            ),
        )
        .target(Cmp::AtMost, 1.3),
    ]
}

/// Sends every body to the ingest endpoint over `connections`, each request once, in order of
/// sending.
pub(super) async fn send_all(
    addr: std::net::SocketAddr,
    bodies: &[Vec<u8>],
    connections: usize,
) -> anyhow::Result<Vec<load::Hit>> {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(bodies.to_vec());
    let n = bodies.len() as u64;
    load::closed_loop(
        addr,
        connections.min(bodies.len()).max(1),
        Stop::Count(n),
        false,
        Arc::new(move |i| {
            Call::post_json("/internal/v1/events", ingest_key(), bodies[i as usize].clone())
        }),
    )
    .await
}
