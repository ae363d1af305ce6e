//! The dispatcher's periodic jobs: expired leases, the planner's statistics, the automatic pause
//! of failing integrations, and retention.

use std::sync::Arc;
use std::time::Duration;

use sipsim_core::Store;
use sipsim_core::clock::now_ms;
use tokio_util::sync::CancellationToken;

/// How often retention pruning runs.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Revocations are kept this long: longer than any token they revoke can live.
const KEEP_REVOCATIONS_MS: i64 = 24 * 3600 * 1000;

/// How often expired leases are looked for: a dead node's deliveries are due again at most this
/// long after their lease ends (one indexed query; on PostgreSQL one node at a time runs it).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The sweeper (expired leases) and the planner's statistics
/// ([`Store::refresh_planner_statistics`]) every [`SWEEP_EVERY`], the automatic pause every `every`, retention
/// pruning every [`PRUNE_EVERY`] (and once at start).
pub(crate) async fn periodic_jobs(
    store: Arc<dyn Store>,
    every: Duration,
    pause_after: Duration,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let mut last_prune: Option<std::time::Instant> = None;
    let mut last_pause_check = std::time::Instant::now();
    loop {
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(std::time::Instant::now());
            let now = now_ms();
            match store
                .prune(now - retention.as_millis() as i64, now - KEEP_REVOCATIONS_MS, now)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(messages = n, "pruned messages past the retention period"),
                Err(e) => tracing::warn!(error = %e, "retention pruning failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY.min(every)) => {},
            _ = shutdown.cancelled() => return,
        }
        let now = now_ms();
        match store.release_expired_leases(now).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(released = n, "made deliveries with expired leases due again"),
            Err(e) => tracing::warn!(error = %e, "releasing expired leases failed"),
        }
        match store.refresh_planner_statistics().await {
            Ok(tables) if tables.is_empty() => {}
            Ok(tables) => tracing::debug!(?tables, "refreshed the planner's statistics"),
            Err(e) => tracing::warn!(error = %e, "refreshing the planner's statistics failed"),
        }
        if last_pause_check.elapsed() < every {
            continue;
        }
        last_pause_check = std::time::Instant::now();
        let failing_since_before = now - pause_after.as_millis() as i64;
        match store.pause_failing_integrations(failing_since_before, now).await {
            Ok(paused) => {
                for account in paused {
                    tracing::warn!(account_id = %account, "every delivery failed for the pause period: integration paused");
                }
            }
            Err(e) => tracing::warn!(error = %e, "pausing failing integrations failed"),
        }
    }
}
