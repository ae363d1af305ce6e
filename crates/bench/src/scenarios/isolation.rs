//! A bad neighbour: one account's backlog and slow endpoint against the others' latency and
//! throughput.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::Backend;
use crate::load::Percentiles;
use crate::mix::{self, Mix};
use crate::receiver::Receiver;
use crate::report::{Check, Cmp};

use super::common::*;
use super::latency::latencies;
use super::throughput::send_all;

/// 4: 100 accounts, SIPSIM's mix, with and without one whose receiver hangs; the hanging one starts
/// with a backlog of due deliveries (50,000; 1,000 with --quick), as a bad neighbour has after hours
/// of failing.
pub async fn isolation(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let accounts_n = 100;
    let rate = ctx.size(500.0, 200.0);
    let duration = ctx.size(Duration::from_secs(10), Duration::from_secs(1));
    let burst = ctx.size(20_000usize, 1_000);
    let backlog = ctx.size(50_000usize, 1_000);
    let mut conditions = Vec::new();
    for hanging in [false, true] {
        let mut urls = ok_urls(&ctx.receiver, accounts_n);
        if hanging {
            urls[0] = ctx.receiver.hang_url();
        }
        let (db, served, accounts) = node(ctx, backend, &urls).await?;
        let skip = hanging.then(|| accounts[0].clone());
        if hanging {
            // SMS, so that every one of them is due (a call's later events wait for its first).
            let queued = mix::items(Mix::Sms, &accounts[..1], backlog, 99);
            send_all(served.addr, &mix::batches(&queued, 1_000), 2).await?;
        }
        latencies(ctx, &served, &accounts, rate, Duration::from_secs(1), skip.as_deref(), 200)
            .await?;
        let mut runs = Vec::new();
        for run in 0..ctx.runs {
            let seed = 201 + run as u64;
            let p = Percentiles::of(
                latencies(ctx, &served, &accounts, rate, duration, skip.as_deref(), seed)
                    .await?
                    .e2e,
            );
            // Throughput: a burst in batches of 1,000 over every account; the healthy ones' rate.
            let items = mix::items(Mix::Sipsim, &accounts, burst, seed + 1000);
            let healthy = items.iter().filter(|i| !(hanging && i.account == 0)).count() as u64;
            let before = ctx.receiver.ok_count();
            let t0 = Instant::now();
            send_all(served.addr, &mix::batches(&items, 1_000), 4).await?;
            let done = ctx
                .receiver
                .wait_for(before + healthy, Duration::from_secs(300), Receiver::ok_count)
                .await
                .ok_or_else(|| anyhow::anyhow!("healthy deliveries never all arrived"))?;
            runs.push(json!({
                "healthy_p50_ms": Percentiles::ms(p.p50),
                "healthy_p99_ms": Percentiles::ms(p.p99),
                "healthy_per_s": healthy as f64 / done.duration_since(t0).as_secs_f64(),
            }));
        }
        let hung = ctx.receiver.hung_count();
        drop(served);
        db.remove().await;
        conditions.push(
            json!({ "hanging_account": hanging, "runs": runs, "hung_requests_so_far": hung }),
        );
    }
    let of = |i: usize, key: &str| {
        medians(conditions[i]["runs"].as_array().map(Vec::as_slice).unwrap_or_default(), key)
    };
    let b = backend.name();
    let p99_ratio = of(1, "healthy_p99_ms") / of(0, "healthy_p99_ms");
    let rate_ratio = of(1, "healthy_per_s") / of(0, "healthy_per_s");
    let checks = vec![
        Check::info(
            format!("isolation {b}: healthy p99, one hanging ÷ none"),
            p99_ratio,
            "×",
            format!(
                "{} ms vs {} ms at {rate}/s over {accounts_n} accounts; {backlog} due at the hanging one",
                of(1, "healthy_p99_ms"),
                of(0, "healthy_p99_ms")
            ),
        )
        .target(Cmp::AtMost, 1.10),
        Check::info(
            format!("isolation {b}: healthy throughput, one hanging ÷ none"),
            rate_ratio,
            "×",
            format!(
                "{:.0}/s vs {:.0}/s, bursts of {burst} in batches of 1,000",
                of(1, "healthy_per_s"),
                of(0, "healthy_per_s")
            ),
        )
        .target(Cmp::AtLeast, 0.95),
    ];
    Ok(Section {
        checks,
        json: json!({ "backend": b, "backlog": backlog, "accounts": accounts_n, "rate_per_s": rate, "seconds": duration.as_secs_f64(), "burst": burst, "conditions": conditions }),
    })
}
