//! The API's own speed against an axum baseline measured in the same run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::fixture::Backend;
use crate::load::{self, Call, Percentiles, Stop};
use crate::node::{self};
use crate::report::{Check, Cmp};

use super::common::*;

/// 1 and 6: `GET /api/v2/webhooks` against a trivial axum handler, and the idle node's memory.
pub async fn api(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let (db, served, accounts) = node(ctx, backend, &ok_urls(&ctx.receiver, 1)).await?;
    let bearer = token(ctx, &db, &served, &accounts[0]).await?;
    // Idle: started, migrated, one token issued, nothing else.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_kib, _) = served.rss_kib();
    let baseline = node::baseline()?;
    let duration = ctx.size(Duration::from_secs(10), Duration::from_millis(500));
    let connections = 32;
    let ours_call = Call::get("/api/v2/webhooks", Some(bearer));
    let base_call = Call::get("/api/v2/webhooks", None);
    let mut runs = Vec::new();
    for _ in 0..ctx.runs {
        let mut run = json!({});
        for (name, addr, call) in
            [("baseline", baseline.addr, &base_call), ("sipsimd", served.addr, &ours_call)]
        {
            let call = call.clone();
            let make: Arc<dyn Fn(u64) -> Call + Send + Sync> = Arc::new(move |_| call.clone());
            // Warm up: connections, caches, the allocator.
            load::closed_loop(addr, connections, Stop::After(duration / 5), false, make.clone())
                .await?;
            let hits =
                load::closed_loop(addr, connections, Stop::After(duration), false, make).await?;
            let (rate, p) = rate_of(&hits, 200)?;
            run[format!("{name}_rps")] = json!(rate);
            run[format!("{name}_p50_ms")] = json!(Percentiles::ms(p.p50));
            run[format!("{name}_p99_ms")] = json!(Percentiles::ms(p.p99));
        }
        run["ratio"] = json!(
            run["sipsimd_rps"].as_f64().unwrap_or(0.0)
                / run["baseline_rps"].as_f64().unwrap_or(1.0)
        );
        runs.push(run);
    }
    drop(baseline);
    drop(served);
    db.remove().await;
    let b = backend.name();
    let rps = medians(&runs, "sipsimd_rps");
    let base = medians(&runs, "baseline_rps");
    let checks = vec![
        Check::info(
            format!("api {b}: GET /webhooks"),
            rps,
            "req/s",
            format!("32 connections; baseline axum handler {:.0} req/s", base),
        ),
        Check::info(
            format!("api {b}: ratio to baseline"),
            medians(&runs, "ratio"),
            "×",
            "median of each run's ratio",
        )
        .target(Cmp::AtLeast, 0.5),
        Check::info(
            format!("api {b}: p50"),
            medians(&runs, "sipsimd_p50_ms"),
            "ms",
            format!("baseline {} ms", medians(&runs, "baseline_p50_ms")),
        ),
        Check::info(
            format!("api {b}: p99"),
            medians(&runs, "sipsimd_p99_ms"),
            "ms",
            format!("baseline {} ms", medians(&runs, "baseline_p99_ms")),
        )
        .target(Cmp::AtMost, 5.0),
        Check::info(
            format!("memory {b}: idle RSS"),
            idle_kib as f64 / 1024.0,
            "MB",
            "sipsimd serve after start, 2 s idle",
        )
        .target(Cmp::AtMost, 20.0),
    ];
    Ok(Section {
        checks,
        json: json!({ "backend": b, "connections": connections, "seconds": duration.as_secs_f64(), "idle_rss_kib": idle_kib, "runs": runs }),
    })
}
