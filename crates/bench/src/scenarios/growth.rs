//! Growth: whether the queue's speed holds as the tables grow.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::fixture::{self, Backend};
use crate::report::{Check, Cmp};

use super::common::*;

/// 5: the cost of claiming and completing deliveries with a small and a large queue behind them,
/// through the store itself (what the dispatcher calls), 64 at a time as the dispatcher claims.
pub async fn growth(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let sizes = ctx.size([10_000usize, 1_000_000], [1_000, 10_000]);
    let measured = ctx.size(10_000usize, 500);
    let mut points = Vec::new();
    for queued in sizes {
        let (db, store, ids) = fixture::store_with_accounts(backend, 10).await?;
        let body = fixture::sms_payload().into_bytes();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let t_fill = Instant::now();
        let mut filled = 0;
        while filled < queued {
            // Up to ten batches of 1,000 per call (one group commit), never past `queued`.
            let left = queued - filled;
            let groups: Vec<Vec<sipsim_core::queue::NewMessage>> =
                (0..left.div_ceil(1_000).min(10))
                    .map(|g| {
                        (0..1_000.min(left - g * 1_000))
                            .map(|k| sipsim_core::queue::NewMessage {
                                account_id: ids[(g + k) % ids.len()].clone(),
                                event: sipsim_core::Event::Sms,
                                body: body.clone(),
                                ordering_key: None,
                                idempotency_key: None,
                            })
                            .collect()
                    })
                    .collect();
            let refs: Vec<&[sipsim_core::queue::NewMessage]> =
                groups.iter().map(Vec::as_slice).collect();
            for group in store.ingest_groups(&refs, now).await? {
                filled += group?.len();
            }
        }
        let fill_secs = t_fill.elapsed().as_secs_f64();
        let mut claim = Duration::ZERO;
        let mut complete = Duration::ZERO;
        let mut done = 0;
        while done < measured {
            let t = Instant::now();
            let claimed = store
                .claim_due(now + 1, 64, 60_000, &sipsim_core::queue::Shares::UNLIMITED)
                .await?;
            claim += t.elapsed();
            anyhow::ensure!(!claimed.is_empty(), "nothing left to claim after {done}");
            let finished: Vec<sipsim_core::queue::FinishedAttempt> = claimed
                .iter()
                .map(|c| sipsim_core::queue::FinishedAttempt {
                    id: c.id.clone(),
                    lease_token: c.lease_token.clone(),
                    record: sipsim_core::queue::AttemptRecord {
                        started_at_ms: now,
                        duration_ms: 1,
                        status_code: Some(200),
                        error: None,
                        response_snippet: None,
                    },
                    completion: sipsim_core::queue::Completion::Succeeded,
                })
                .collect();
            let t = Instant::now();
            store.complete(&finished).await?;
            complete += t.elapsed();
            done += claimed.len();
        }
        drop(store);
        db.remove().await;
        points.push(json!({
            "queued": queued,
            "fill_seconds": fill_secs,
            "fill_per_s": queued as f64 / fill_secs,
            "measured": done,
            "claim_us_per_delivery": claim.as_secs_f64() * 1e6 / done as f64,
            "complete_us_per_delivery": complete.as_secs_f64() * 1e6 / done as f64,
        }));
    }
    let b = backend.name();
    let per = |i: usize| {
        points[i]["claim_us_per_delivery"].as_f64().unwrap_or(f64::NAN)
            + points[i]["complete_us_per_delivery"].as_f64().unwrap_or(f64::NAN)
    };
    let (small, large) = (sizes[0], sizes[1]);
    let checks = vec![
        Check::info(
            format!("growth {b}: claim+complete at {small} queued"),
            per(0),
            "µs/deliv",
            "store calls, 64 per claim",
        ),
        Check::info(
            format!("growth {b}: claim+complete at {large} queued"),
            per(1),
            "µs/deliv",
            "store calls, 64 per claim",
        ),
        Check::info(
            format!("growth {b}: {large} ÷ {small} queued"),
            per(1) / per(0),
            "×",
            "flat means ≈ 1",
        )
        .target(Cmp::AtMost, 1.25),
    ];
    Ok(Section { checks, json: json!({ "backend": b, "points": points }) })
}
