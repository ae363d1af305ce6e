//! One claimed delivery, attempted and judged; a claim's deliveries as trains, each sent in chain
//! order by one task; and the recorder that commits their results in order (group commit).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sipsim_core::clock::now_ms;
use sipsim_core::queue::{ClaimedDelivery, Completion, FinishedAttempt};
use sipsim_core::retry::RetrySchedule;
use sipsim_core::store::Alarm;
use sipsim_core::{AccountId, DeliveryId, Store};
use tokio::sync::{Notify, mpsc};

use crate::adaptive::ConcurrencyLimits;
use crate::sender::{Sender, Verdict};

/// The claimed deliveries as trains, each sent by one task holding one slot: an unordered delivery
/// alone, a chain's head with the deliveries of its chain claimed behind it, in chain order. A
/// member after a gap in the chain's numbers (changed by someone else between the claim's read and
/// its update) is never sent out of order: it goes to `handed_back`.
pub(crate) fn trains(
    claimed: Vec<ClaimedDelivery>,
    handed_back: &mut Vec<(DeliveryId, String)>,
) -> Vec<Vec<ClaimedDelivery>> {
    let mut trains: Vec<Vec<ClaimedDelivery>> = Vec::with_capacity(claimed.len());
    let mut chains: HashMap<(AccountId, String), usize> = HashMap::new();
    for delivery in claimed {
        let Some(link) = &delivery.chain else {
            trains.push(vec![delivery]);
            continue;
        };
        let key = (delivery.account_id.clone(), link.key.clone());
        match chains.get(&key) {
            Some(&i) => trains[i].push(delivery),
            None => {
                chains.insert(key, trains.len());
                trains.push(vec![delivery]);
            }
        }
    }
    for train in &mut trains {
        train.sort_by_key(|d| d.chain.as_ref().map(|c| c.seq));
        let seq = |d: &ClaimedDelivery| d.chain.as_ref().map(|c| c.seq);
        let first = seq(&train[0]);
        let gap = train.iter().enumerate().position(|(i, d)| seq(d) != first.map(|s| s + i as i64));
        if let Some(at) = gap {
            handed_back.extend(train.drain(at..).map(|d| (d.id, d.lease_token)));
        }
    }
    trains
}

/// What an attempt task hands the recorder.
#[derive(Debug)]
pub(crate) enum Recorded {
    /// An attempt and how its delivery goes on.
    Attempt(FinishedAttempt),
    /// A train's deliveries that were not sent (their head is to be retried, or the train ran out
    /// of time): handed back after the attempts before them are recorded.
    Unsent(Vec<(DeliveryId, String)>),
}

/// Sends a train's deliveries one after the other, each as soon as the one before it has
/// succeeded or failed for good, and hands the recorder each result as it comes. A member starts
/// only within `budget` (the attempt timeout) of the first, so with the lease sized for it
/// ([`crate::DispatcherConfig::lease`]) the last one is recorded before their common lease ends. What it
/// does not send (after a retry or a pause, or past the budget) goes back to wait for its turn.
pub(crate) async fn run_train(
    how: Attempting<'_>,
    train: Vec<ClaimedDelivery>,
    results: &mpsc::Sender<Recorded>,
    budget: Duration,
) {
    let started = std::time::Instant::now();
    let mut members = train.into_iter();
    while let Some(delivery) = members.next() {
        let finished = attempt(how, delivery).await;
        let chain_moves_on =
            matches!(finished.completion, Completion::Succeeded | Completion::Failed);
        // If the recorder is gone (shutting down), the leases expire and the deliveries are sent
        // again, in order: at-least-once holds.
        if results.send(Recorded::Attempt(finished)).await.is_err() {
            return;
        }
        if !chain_moves_on || started.elapsed() >= budget {
            let rest: Vec<_> = members.map(|d| (d.id, d.lease_token)).collect();
            if !rest.is_empty() {
                let _ = results.send(Recorded::Unsent(rest)).await;
            }
            return;
        }
    }
}

/// The longest a `Retry-After` may stretch a retry beyond the schedule's own delay.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(2 * 3600);

/// The delay before the next attempt: the schedule's, or a longer `Retry-After`, capped at the
/// schedule's delay + 2 h (DESIGN.md § Retries). `None` when no attempt is left.
pub fn next_delay(
    schedule: &RetrySchedule,
    next_attempt: u32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let backoff = schedule.delay_before(next_attempt)?;
    Some(match retry_after {
        Some(asked) => asked.max(backoff).min(backoff + RETRY_AFTER_CAP),
        None => backoff,
    })
}

/// What an attempt needs besides its delivery.
#[derive(Clone, Copy)]
pub(crate) struct Attempting<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) sender: &'a Sender,
    pub(crate) schedule: &'a RetrySchedule,
    /// Fed with every attempt's answer.
    pub(crate) limits: &'a ConcurrencyLimits,
}

/// One attempt of one claimed delivery, judged: what to record and how the delivery goes on.
async fn attempt(how: Attempting<'_>, delivery: ClaimedDelivery) -> FinishedAttempt {
    let Attempting { store, sender, schedule, limits } = how;
    let stall_before = limits.stall_clock(now_ms());
    let (record, verdict) = sender.deliver(&delivery).await;
    limits.observe(&delivery.account_id, &record, stall_before, now_ms());
    let completion = match verdict {
        Verdict::Success => Completion::Succeeded,
        Verdict::Gone => {
            // 410: the endpoint is gone for good. Pause the integration at once; this delivery and
            // every new one are kept until a user resumes it.
            let reason = "the endpoint answered 410 Gone";
            match store.pause_integration(&delivery.account_id, reason, now_ms()).await {
                Ok(true) => {
                    tracing::warn!(account_id = %delivery.account_id, "{reason}: integration paused")
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "pausing an integration failed"),
            }
            Completion::Paused
        }
        Verdict::Failure { retry_after } => {
            match next_delay(schedule, delivery.attempt + 1, retry_after) {
                Some(delay) => Completion::RetryAt(now_ms() + delay.as_millis() as i64),
                None => Completion::Failed,
            }
        }
    };
    tracing::debug!(
        delivery_id = %delivery.id, attempt = delivery.attempt, status = ?record.status_code,
        error = ?record.error, ?completion, "attempt finished"
    );
    metrics::histogram!("sipsim_delivery_attempt_duration_seconds")
        .record(record.duration_ms as f64 / 1000.0);
    match completion {
        Completion::RetryAt(_) => metrics::counter!("sipsim_delivery_retries_total").increment(1),
        Completion::Succeeded => {
            metrics::counter!("sipsim_deliveries_total", "outcome" => "succeeded").increment(1)
        }
        Completion::Failed => {
            metrics::counter!("sipsim_deliveries_total", "outcome" => "failed").increment(1)
        }
        Completion::Paused => {
            metrics::counter!("sipsim_deliveries_total", "outcome" => "paused").increment(1)
        }
    }
    FinishedAttempt { id: delivery.id, lease_token: delivery.lease_token, record, completion }
}

/// Most results written in one transaction.
const RECORD_BATCH: usize = 256;

/// Writes attempt results as they come, as many per transaction as are waiting (group commit),
/// then hands back the trains' unsent deliveries (after the results before them).
pub(crate) async fn record_results(
    store: Arc<dyn Store>,
    mut pending: mpsc::Receiver<Recorded>,
    wake: Arc<Notify>,
    storage_alarm: Alarm,
) {
    let mut received = Vec::with_capacity(RECORD_BATCH);
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    let mut unsent = Vec::new();
    while pending.recv_many(&mut received, RECORD_BATCH).await > 0 {
        for item in received.drain(..) {
            match item {
                Recorded::Attempt(finished) => batch.push(finished),
                Recorded::Unsent(rest) => unsent.extend(rest),
            }
        }
        // A chain's delivery that ended makes the next one of its call due, if it has come: the
        // dispatcher may be idle, waiting for exactly that. Most results release nothing (a call's
        // next event comes seconds later), and waking for those cost a claim that found nothing.
        let released = match storage_alarm.watch_storage(store.complete(&batch).await) {
            Ok(completed) => {
                for (finished, ok) in batch.iter().zip(&completed.applied) {
                    if !ok {
                        tracing::warn!(
                            delivery_id = %finished.id,
                            "lease expired before the attempt was recorded; the delivery was claimed again"
                        );
                    }
                }
                completed.released > 0
            }
            // The leases will expire and the sweeper make these deliveries due again.
            Err(e) => {
                tracing::error!(error = %e, results = batch.len(), "recording attempts failed");
                false
            }
        };
        if !unsent.is_empty() {
            match store.unclaim(&unsent, now_ms()).await {
                Ok(()) => wake.notify_one(),
                // Their leases will expire and the sweeper put them back in order.
                Err(e) => tracing::warn!(error = %e, "handing back unsent deliveries failed"),
            }
            unsent.clear();
        }
        if released || batch.iter().any(|f| matches!(f.completion, Completion::RetryAt(_))) {
            // The dispatcher may be sleeping past a retry's due time, or waiting for a call's
            // next event: let it look again.
            wake.notify_one();
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_stretches_the_backoff_within_the_cap() {
        let s = RetrySchedule::parse("0s,5s,30s", 0.0).unwrap();
        let secs = Duration::from_secs;
        assert_eq!(next_delay(&s, 2, None), Some(secs(5)));
        assert_eq!(next_delay(&s, 2, Some(secs(60))), Some(secs(60)));
        assert_eq!(next_delay(&s, 2, Some(secs(1))), Some(secs(5)), "never shorter than backoff");
        assert_eq!(next_delay(&s, 2, Some(secs(99_999))), Some(secs(5) + RETRY_AFTER_CAP));
        assert_eq!(next_delay(&s, 4, Some(secs(60))), None, "no attempt left");
    }
}
