//! Adaptive per-endpoint concurrency: how many attempts one integration may have in flight on this
//! node, learned from its own answers (additive increase, multiplicative decrease).
//!
//! Every integration starts at the full cap (`--delivery-concurrency-per-integration`). An attempt
//! that gets a 5xx or a 429 halves the limit, down to 1; so does one that times out or cannot
//! connect, and an answer that took several times the endpoint's usual latency ([`SLOW_FACTOR`],
//! and at least [`SLOW_MARGIN_MS`] more). Time this node's own runtime lost to stalls during the
//! attempt is taken off its latency first, and a timeout that lost a quarter of its time so
//! ([`STALLED_SHARE`]) is not held against the endpoint: a busy node explains those by itself. Each healthy answer adds
//! `1 / limit`, so the limit grows by about one per round of answers back to the cap. Like TCP, it
//! halves at most once per round: only an attempt that started after the last cut can cut again, so
//! sixteen timeouts of the same moment count as one signal, not sixteen.
//!
//! Why AIMD and not a latency rule alone (Vegas, gradient): the signals webhook endpoints give are
//! mostly failures (timeouts, 502s, 503s from an overloaded app server), which a latency rule does
//! not see; and a latency rule's baseline is what a busy sender distorts. Slowness is a signal too,
//! but judged against the endpoint's *own* usual latency, with a margin, and with this node's own
//! stalls taken off (a probe sets a 10 ms timer over and over and adds up how late it wakes): a busy
//! machine makes every endpoint look slow, and that must not shrink a healthy endpoint's slots.
//!
//! Other answers (a 4xx other than 429, 410) say nothing about load and change nothing. The limits
//! are this node's: on PostgreSQL each node learns its own (they see the same endpoint, so they cut
//! together) — `docs/SCALING.md` says why the cap is per node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sipsim_core::AccountId;
use sipsim_core::clock::now_ms;
use sipsim_core::queue::AttemptRecord;
use tokio_util::sync::CancellationToken;

/// An answer this many times slower than the endpoint's usual latency is a congestion signal…
pub const SLOW_FACTOR: f64 = 4.0;
/// …if it is also at least this much slower (ms): a 1 ms endpoint answering in 6 ms is not in
/// trouble.
pub const SLOW_MARGIN_MS: f64 = 100.0;
/// How often the lag probe sets a timer. A stall of this node's runtime shows as a late wake-up only
/// for the part of it past the timer's deadline, so the timer is short (a hundred wake-ups a second
/// cost nothing measurable).
pub const PROBE_EVERY: Duration = Duration::from_millis(10);
/// A wake-up up to this late (ms) is the timer's own jitter, not a stall.
const JITTER_MS: i64 = 2;
/// A timeout whose attempt lost this share of its time or more to stalls of this node is not held
/// against the endpoint.
pub const STALLED_SHARE: f64 = 0.25;

/// An integration with no attempt for this long is forgotten (its usual latency too), so the table
/// holds the integrations that are active, not every one ever seen; one that comes back starts at
/// the cap again.
pub const FORGET_AFTER_MS: i64 = 10 * 60 * 1000;

/// What an attempt says about its endpoint's load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A 2xx in this many ms.
    Answered(f64),
    /// A timeout or a failed connection.
    NoAnswer,
    /// A 5xx or a 429: the endpoint says it is in trouble.
    Congested,
    /// Anything else (another 4xx, 410): nothing about load.
    Neutral,
}

impl Signal {
    /// Reads an attempt's record.
    pub fn of(record: &AttemptRecord) -> Signal {
        match record.status_code {
            None => Signal::NoAnswer,
            Some(429 | 500..=599) => Signal::Congested,
            Some(200..=299) => Signal::Answered(record.duration_ms.max(0) as f64),
            Some(_) => Signal::Neutral,
        }
    }
}

/// One integration's window.
#[derive(Debug, Clone)]
struct Window {
    /// The limit, fractional so that additive increase can add `1 / limit` per answer.
    limit: f64,
    /// The endpoint's usual latency (ms): follows faster answers quickly, slower ones slowly, so
    /// a slowdown stands out for a while and a lasting one becomes the new usual.
    usual_ms: Option<f64>,
    /// When the limit was last cut (Unix ms): attempts started before it cannot cut it again.
    cut_at_ms: i64,
    /// When an attempt of it last ended (Unix ms).
    seen_at_ms: i64,
}

/// The adaptive limits of this node's integrations, shared between the dispatcher (which obeys
/// and feeds them) and the server (`/metrics`, the dashboard). Cloning shares them.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimits {
    inner: Arc<Inner>,
}

/// The windows, and the integrations below the cap apart, so that a claim (which asks for those
/// each time) does not walk every active integration.
#[derive(Debug, Default)]
struct Table {
    windows: HashMap<AccountId, Window>,
    lowered: HashMap<AccountId, u32>,
}

#[derive(Debug)]
struct Inner {
    cap: u32,
    table: Mutex<Table>,
    /// When the lag probe last set its timer (Unix ms; `i64::MAX` while no probe runs).
    probe_asked_ms: AtomicI64,
    /// How late the lag probe has woken, all told (ms past each deadline, jitter left out).
    stalled_ms: AtomicI64,
}

impl ConcurrencyLimits {
    /// Limits that start, and grow back, to `cap` (at least 1).
    pub fn new(cap: usize) -> ConcurrencyLimits {
        ConcurrencyLimits {
            inner: Arc::new(Inner {
                cap: u32::try_from(cap.max(1)).unwrap_or(u32::MAX),
                table: Mutex::new(Table::default()),
                probe_asked_ms: AtomicI64::new(i64::MAX),
                stalled_ms: AtomicI64::new(0),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A poisoned lock only means a panic while updating; the figures are still usable.
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The full cap.
    pub fn cap(&self) -> u32 {
        self.inner.cap
    }

    /// `account`'s current limit: the cap unless its endpoint has given signs of trouble.
    pub fn limit(&self, account: &AccountId) -> u32 {
        self.table().lowered.get(account).copied().unwrap_or(self.inner.cap)
    }

    /// The integrations whose limit is below the cap now, and their limits, in no order.
    pub fn lowered(&self) -> Vec<(AccountId, u32)> {
        self.table().lowered.iter().map(|(a, n)| (a.clone(), *n)).collect()
    }

    /// Records that the lag probe set its first timer, at `at_ms`.
    pub fn probe_started(&self, at_ms: i64) {
        self.inner.probe_asked_ms.store(at_ms, Ordering::Relaxed);
    }

    /// Records that the lag probe woke at `woke_ms` (and set its next timer at once).
    pub fn probe_woke(&self, woke_ms: i64) {
        let asked = self.inner.probe_asked_ms.swap(woke_ms, Ordering::Relaxed);
        let late = lateness(asked, woke_ms);
        if late > 0 {
            self.inner.stalled_ms.fetch_add(late, Ordering::Relaxed);
        }
    }

    /// How much time this node's runtime has lost to stalls until `now_ms`, all told (ms): what the
    /// probe counted, and how overdue its timer is now. An attempt reads it before it starts, and
    /// the difference at its end is what the node, not the endpoint, cost it.
    pub fn stall_clock(&self, now_ms: i64) -> i64 {
        let asked = self.inner.probe_asked_ms.load(Ordering::Relaxed);
        self.inner.stalled_ms.load(Ordering::Relaxed) + lateness(asked, now_ms)
    }

    /// Sets a timer every [`PROBE_EVERY`] and notes how late the runtime wakes it, so that a busy
    /// node is told from a slow endpoint; forgets idle integrations once a minute. Runs until
    /// `shutdown`.
    pub async fn probe_lag(self, shutdown: CancellationToken) {
        let mut last_forget = now_ms();
        self.probe_started(last_forget);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {},
                _ = shutdown.cancelled() => return,
            }
            let woke = now_ms();
            self.probe_woke(woke);
            if woke - last_forget >= 60_000 {
                last_forget = woke;
                self.forget_idle(woke);
            }
        }
    }

    /// Learns from one finished attempt of `account`, at `now_ms`; `stall_before` is what
    /// [`stall_clock`](Self::stall_clock) said when it started.
    pub fn observe(
        &self,
        account: &AccountId,
        record: &AttemptRecord,
        stall_before: i64,
        now_ms: i64,
    ) {
        let signal = Signal::of(record);
        if signal == Signal::Neutral {
            return;
        }
        let stalled = (self.stall_clock(now_ms) - stall_before).max(0) as f64;
        let cap = f64::from(self.inner.cap);
        let mut table = self.table();
        let Table { windows, lowered } = &mut *table;
        // Looked up before inserting: the common case must not copy the account id.
        if !windows.contains_key(account) {
            windows.insert(
                account.clone(),
                Window { limit: cap, usual_ms: None, cut_at_ms: i64::MIN, seen_at_ms: now_ms },
            );
        }
        let Some(w) = windows.get_mut(account) else {
            return;
        };
        w.seen_at_ms = now_ms;
        let congested = match signal {
            Signal::Answered(seen) => {
                // What the endpoint took: what was seen, less what this node's stalls took.
                let ms = (seen - stalled).max(0.0);
                let slow =
                    w.usual_ms.is_some_and(|u| ms >= u * SLOW_FACTOR && ms >= u + SLOW_MARGIN_MS);
                w.usual_ms = Some(match w.usual_ms {
                    None => ms,
                    Some(u) if ms < u => u + (ms - u) / 8.0,
                    Some(u) => u + (ms - u) / 64.0,
                });
                slow
            }
            // A timeout that this node's stalls ate into may be this node's own doing.
            Signal::NoAnswer => stalled < STALLED_SHARE * record.duration_ms.max(0) as f64,
            Signal::Congested => true,
            Signal::Neutral => false,
        };
        if congested {
            if record.started_at_ms >= w.cut_at_ms {
                w.limit = (w.limit / 2.0).floor().max(1.0);
                w.cut_at_ms = now_ms;
                tracing::debug!(account_id = %account, limit = w.limit, "endpoint in trouble: concurrency halved");
            }
        } else {
            w.limit = (w.limit + 1.0 / w.limit).min(cap);
        }
        match whole(w.limit) {
            n if n < self.inner.cap => {
                lowered.insert(account.clone(), n);
            }
            _ if !lowered.is_empty() => {
                lowered.remove(account);
            }
            _ => {}
        }
    }

    /// Forgets integrations with no attempt for [`FORGET_AFTER_MS`].
    pub fn forget_idle(&self, now_ms: i64) {
        let mut table = self.table();
        let Table { windows, lowered } = &mut *table;
        windows.retain(|_, w| now_ms - w.seen_at_ms < FORGET_AFTER_MS);
        lowered.retain(|a, _| windows.contains_key(a));
    }
}

/// How late (ms, past the deadline and its jitter) a probe timer set at `asked_ms` is at `at_ms`.
fn lateness(asked_ms: i64, at_ms: i64) -> i64 {
    let deadline = asked_ms.saturating_add(PROBE_EVERY.as_millis() as i64 + JITTER_MS);
    at_ms.saturating_sub(deadline).max(0)
}

/// A window's limit as a whole number of slots, at least 1.
fn whole(limit: f64) -> u32 {
    (limit.floor() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse(&format!("acc_{}", "a".repeat(26))).expect("an account id")
    }

    fn answered(started_at_ms: i64, ms: i64) -> AttemptRecord {
        AttemptRecord {
            started_at_ms,
            duration_ms: ms,
            status_code: Some(200),
            error: None,
            response_snippet: None,
        }
    }

    fn with_status(started_at_ms: i64, status: Option<u16>) -> AttemptRecord {
        AttemptRecord {
            status_code: status,
            error: status.is_none().then(|| "timed out".to_owned()),
            ..answered(started_at_ms, 2000)
        }
    }

    #[test]
    fn an_integration_starts_at_the_cap_and_halves_once_per_round_down_to_one() {
        let limits = ConcurrencyLimits::new(16);
        let a = account();
        assert_eq!(limits.limit(&a), 16);
        // Sixteen timeouts of attempts started together: one signal.
        for _ in 0..16 {
            limits.observe(&a, &with_status(1_000, None), 0, 3_000);
        }
        assert_eq!(limits.limit(&a), 8);
        assert_eq!(limits.lowered(), vec![(a.clone(), 8)]);
        // Attempts started after the cut cut again, each round.
        limits.observe(&a, &with_status(3_001, Some(503)), 0, 5_000);
        assert_eq!(limits.limit(&a), 4);
        limits.observe(&a, &with_status(5_001, Some(429)), 0, 7_000);
        limits.observe(&a, &with_status(7_001, Some(502)), 0, 9_000);
        limits.observe(&a, &with_status(9_001, None), 0, 11_000);
        limits.observe(&a, &with_status(11_001, None), 0, 13_000);
        assert_eq!(limits.limit(&a), 1, "never below one");
    }

    #[test]
    fn healthy_answers_grow_the_limit_back_to_the_cap_one_round_at_a_time() {
        let limits = ConcurrencyLimits::new(16);
        let a = account();
        for k in 0..6 {
            limits.observe(&a, &with_status(k * 10, None), 0, k * 10 + 5);
        }
        assert_eq!(limits.limit(&a), 1);
        let mut answers = 0;
        let mut at = 1_000;
        while limits.limit(&a) < 16 {
            at += 1;
            limits.observe(&a, &answered(at, 2), 0, at);
            answers += 1;
            assert!(answers < 1_000, "never grew back");
        }
        // About 1 + 2 + … + 15 answers: one round of answers per slot.
        assert!((100..=140).contains(&answers), "{answers} answers");
        limits.observe(&a, &answered(at + 1, 2), 0, at + 2);
        assert_eq!(limits.limit(&a), 16, "never above the cap");
        assert!(limits.lowered().is_empty());
    }

    #[test]
    fn an_endpoint_slower_than_usual_loses_slots_but_not_for_the_nodes_own_stalls() {
        let limits = ConcurrencyLimits::new(16);
        let a = account();
        // No probe running: nothing is taken off.
        for k in 0..50 {
            limits.observe(&a, &answered(k, 20), 0, k + 20);
        }
        assert_eq!(limits.limit(&a), 16);
        // 4× and +100 ms: 90 ms is 4.5× but only +70 ms, not slow.
        limits.observe(&a, &answered(100, 90), 0, 190);
        assert_eq!(limits.limit(&a), 16);

        // 400 ms seen, of which the node stalled 350 (its 10 ms timer set at 210 woke at 572).
        limits.probe_started(210);
        let before = limits.stall_clock(200);
        limits.probe_woke(572);
        limits.observe(&a, &answered(200, 400), before, 600);
        assert_eq!(limits.limit(&a), 16, "a busy node does not blame the endpoint");
        // A stall still going on counts too: the timer set at 572 is overdue at 1,000.
        let before = limits.stall_clock(600);
        limits.observe(&a, &answered(600, 400), before, 1_000);
        assert_eq!(limits.limit(&a), 16, "a busy node does not blame the endpoint");
        // So does a timeout that lost a quarter of its time or more to stalls; not a 503, the
        // endpoint's own word.
        limits.probe_woke(1_001);
        let before = limits.stall_clock(1_001);
        limits.probe_woke(1_600);
        limits.observe(&a, &with_status(1_001, None), before, 1_600);
        assert_eq!(limits.limit(&a), 16, "2 s, of which 587 ms stalled");
        limits.observe(&a, &with_status(1_001, Some(503)), before, 1_600);
        assert_eq!(limits.limit(&a), 8);

        // The node on time: 400 ms is the endpoint's, and slow.
        limits.probe_woke(2_011);
        let before = limits.stall_clock(2_011);
        limits.probe_woke(2_021);
        limits.observe(&a, &answered(2_011, 400), before, 2_025);
        assert_eq!(limits.limit(&a), 4);
    }

    #[test]
    fn other_client_errors_say_nothing_and_idle_windows_are_forgotten() {
        let limits = ConcurrencyLimits::new(4);
        let a = account();
        limits.observe(&a, &with_status(0, Some(404)), 0, 10);
        limits.observe(&a, &with_status(0, Some(410)), 0, 10);
        assert_eq!(limits.limit(&a), 4);
        limits.observe(&a, &with_status(0, Some(500)), 0, 10);
        assert_eq!(limits.limit(&a), 2);
        limits.forget_idle(9 + FORGET_AFTER_MS);
        assert_eq!(limits.limit(&a), 2, "kept while active");
        limits.forget_idle(10 + FORGET_AFTER_MS);
        assert!(limits.table().windows.is_empty());
        assert!(limits.lowered().is_empty());
        assert_eq!(limits.limit(&a), 4, "back at the cap when it comes back");
    }
}
