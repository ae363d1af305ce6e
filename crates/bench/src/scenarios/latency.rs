//! End-to-end latency under an open-loop load.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixture::Backend;
use crate::load::{self, Call, Percentiles};
use crate::mix::{self, Mix};
use crate::node::Served;
use crate::report::{Check, Cmp};

use super::common::*;

/// Sends `rate` single-event ingest requests/s for `duration`, SIPSIM's mix over `accounts`, and
/// returns the latency from each request's scheduled instant to its arrival at the receiver, for the
/// messages that arrived at a healthy endpoint (`skip` names an account whose messages are not
/// waited for). `seed` picks the calls (a fresh seed per run, so no call is sent twice).
pub(super) async fn latencies(
    ctx: &Ctx,
    served: &Served,
    accounts: &[String],
    rate: f64,
    duration: Duration,
    skip: Option<&str>,
    seed: u64,
) -> anyhow::Result<Latencies> {
    let n = (rate * duration.as_secs_f64() * 1.1) as usize + 100;
    let items = Arc::new(mix::items(Mix::Sipsim, accounts, n, seed));
    let make = {
        let items = items.clone();
        Arc::new(move |i: u64| {
            let body = items[i as usize % items.len()].body.clone().into_bytes();
            Call::post_json("/internal/v1/events", ingest_key(), body)
        })
    };
    ctx.receiver.take_arrivals();
    ctx.receiver.record(true);
    let load::OpenLoop { hits, release_late_us } =
        load::open_loop(served.addr, 16, rate, duration, true, make).await?;
    let mut sent: HashMap<String, Instant> = HashMap::new();
    for hit in &hits {
        anyhow::ensure!(hit.status == 202, "ingest answered {}", hit.status);
        let account = &accounts[items[hit.index as usize % items.len()].account];
        if Some(account.as_str()) == skip {
            continue;
        }
        let answer: Value = serde_json::from_slice(hit.body.as_deref().unwrap_or_default())?;
        let id = answer["data"][0]["message_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no message_id in {answer}"))?;
        sent.insert(id.to_owned(), hit.scheduled);
    }
    let mut arrivals = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.len() < sent.len() && Instant::now() < deadline {
        arrivals.extend(ctx.receiver.take_arrivals());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ctx.receiver.record(false);
    let lat: Vec<u64> = sent
        .iter()
        .filter_map(|(id, at)| {
            arrivals.get(id).map(|got| got.saturating_duration_since(*at).as_micros() as u64)
        })
        .collect();
    anyhow::ensure!(lat.len() == sent.len(), "only {} of {} events arrived", lat.len(), sent.len());
    Ok(Latencies {
        e2e: lat,
        ingest: hits.iter().map(load::Hit::latency_us).collect(),
        release_late: release_late_us,
    })
}

/// One open-loop run's latencies, microseconds.
pub(super) struct Latencies {
    /// Scheduled instant → the receiver has it.
    pub(super) e2e: Vec<u64>,
    /// Scheduled instant → the 202 read whole.
    pub(super) ingest: Vec<u64>,
    /// How late the generator released each request after its scheduled instant.
    pub(super) release_late: Vec<u64>,
}

/// 3: end-to-end latency at a steady rate.
pub async fn latency(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let (db, served, accounts) = node(ctx, backend, &ok_urls(&ctx.receiver, 20)).await?;
    let rate = ctx.latency_rate.unwrap_or(ctx.size(500.0, 200.0));
    let duration = ctx.size(Duration::from_secs(20), Duration::from_secs(1));
    // Warm-up second, not counted.
    latencies(ctx, &served, &accounts, rate, Duration::from_secs(1), None, 100).await?;
    let mut runs = Vec::new();
    for run in 0..ctx.runs {
        let run_lat =
            latencies(ctx, &served, &accounts, rate, duration, None, 101 + run as u64).await?;
        let p = Percentiles::of(run_lat.e2e);
        let i = Percentiles::of(run_lat.ingest);
        let late = Percentiles::of(run_lat.release_late);
        runs.push(json!({
            "p50_ms": Percentiles::ms(p.p50), "p90_ms": Percentiles::ms(p.p90),
            "p99_ms": Percentiles::ms(p.p99), "max_ms": Percentiles::ms(p.max),
            "ingest_p50_ms": Percentiles::ms(i.p50), "ingest_p99_ms": Percentiles::ms(i.p99),
            "release_late_p50_ms": Percentiles::ms(late.p50),
            "release_late_p99_ms": Percentiles::ms(late.p99),
        }));
    }
    drop(served);
    db.remove().await;
    let b = backend.name();
    let checks = vec![
        Check::info(
            format!("end-to-end {b} at {rate}/s: p50"),
            medians(&runs, "p50_ms"),
            "ms",
            format!(
                "ingest request sent → receiver has it (the 202 alone: {} ms; requests left the \
                 schedule {} ms late, p99 {} ms); Svix here 3.4–4.4 ms at 50/s",
                medians(&runs, "ingest_p50_ms"),
                medians(&runs, "release_late_p50_ms"),
                medians(&runs, "release_late_p99_ms")
            ),
        )
        .target(Cmp::AtMost, 3.0),
        Check::info(
            format!("end-to-end {b} at {rate}/s: p99"),
            medians(&runs, "p99_ms"),
            "ms",
            format!("max {} ms; Svix here 5.6–16.6 ms at 50/s", medians(&runs, "max_ms")),
        )
        .target(Cmp::AtMost, 15.0),
    ];
    Ok(Section {
        checks,
        json: json!({ "backend": b, "rate_per_s": rate, "seconds": duration.as_secs_f64(), "accounts": 20, "runs": runs }),
    })
}
