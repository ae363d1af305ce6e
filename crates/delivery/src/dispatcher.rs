//! The dispatcher: claim due deliveries, attempt each, complete or reschedule.
//!
//! It sleeps until woken — by ingest through [`Dispatcher::waker`], by a completion that scheduled a
//! retry, by the next due time, or at the latest after the fallback poll (which covers writers in other
//! processes). Concurrency is bounded by a semaphore; a claim never takes more deliveries than there
//! are free slots, so a claimed delivery is never left waiting while its lease runs; when busy, it
//! gathers a few freed slots (within a millisecond) so that one claim refills several. How many
//! slots one integration may hold is learned from its answers ([`crate::adaptive`]). A sweeper makes
//! deliveries whose lease expired (their worker died) due again.
//!
//! A call's events go out one at a time, in ingest order. A claim brings each call's earliest
//! unfinished event together with the ones waiting behind it (a *train*, see
//! [`TRAIN_LEN`](sipsim_core::queue::TRAIN_LEN)); one task sends them in order, the next as soon as
//! the previous one has succeeded, and hands each result to the recorder, which commits them in
//! order (group commit). So a call's backlog drains at the receiver's pace, not one event per
//! database round trip. After a crash, the lease expires, the call's earliest unrecorded event is
//! due again and the ones behind it wait: a predecessor resent goes out before its successor again.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use std::collections::HashMap;

use sipsim_core::clock::now_ms;
use sipsim_core::queue::Shares;
use sipsim_core::retry::RetrySchedule;
use sipsim_core::store::Alarm;
use sipsim_core::{AccountId, Store, StoreError};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::adaptive::ConcurrencyLimits;
use crate::attempt::{Attempting, record_results, run_train, trains};
pub use crate::attempt::{RETRY_AFTER_CAP, next_delay};
use crate::sender::Sender;
use crate::throttle::Throttle;
use crate::upkeep::periodic_jobs;

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Attempts in flight at once, across all integrations.
    pub concurrency: usize,
    /// Attempts in flight at once for one integration, so that a slow or hanging endpoint holds at
    /// most this many slots (each for at most the timeout) and never starves the others.
    pub per_integration: usize,
    /// Most deliveries taken by one claim.
    pub claim_batch: u32,
    /// Delays before each attempt.
    pub schedule: RetrySchedule,
    /// The attempt timeout (the lease is sized from it).
    pub timeout: Duration,
    /// The longest sleep without a wake-up.
    pub fallback_poll: Duration,
    /// An integration whose every attempt has failed for this long is paused (`--pause-after`).
    pub pause_after: Duration,
    /// Messages, their deliveries and attempts older than this are deleted (`--retention`).
    pub retention: Duration,
    /// After a claim brought a delivery whose signing secret this node cannot decrypt, it stops
    /// claiming and tries again after this long (the data may be mended meanwhile).
    pub halt_retry: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            concurrency: 128,
            per_integration: 16,
            claim_batch: 64,
            schedule: RetrySchedule::default(),
            timeout: Duration::from_secs(2),
            fallback_poll: Duration::from_secs(1),
            pause_after: Duration::from_secs(5 * 24 * 3600),
            retention: Duration::from_secs(30 * 24 * 3600),
            halt_retry: Duration::from_secs(30),
        }
    }
}

impl DispatcherConfig {
    /// A lease outlives the whole attempt (its timeout) plus the time to record the result, so a slow
    /// receiver never causes a second, concurrent send of the same delivery.
    /// A train's later deliveries start within one timeout of the first (see `run_train`), so the
    /// lease covers that too: 3 × timeout + 10 s.
    pub fn lease(&self) -> Duration {
        self.timeout * 3 + Duration::from_secs(10)
    }
}

/// When a dispatcher's loop last went round (Unix ms), for readiness checks: it goes round at least
/// every second when idle, and whenever a slot frees up when busy. And why it stopped claiming,
/// while it has.
#[derive(Clone, Default, Debug)]
pub struct Heartbeat {
    /// When the loop last went round, Unix ms (0: not yet).
    beat_at: Arc<AtomicI64>,
    /// Raised while the dispatcher has stopped claiming.
    halted: Alarm,
}

impl Heartbeat {
    fn beat(&self) {
        self.beat_at.store(now_ms(), Ordering::Relaxed);
    }

    /// How long ago the loop last went round; `None` before it first did.
    pub fn age(&self) -> Option<Duration> {
        match self.beat_at.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis((now_ms() - at).max(0) as u64)),
        }
    }

    /// Why the dispatcher has stopped claiming, while it has.
    pub fn halted(&self) -> Option<String> {
        self.halted.raised()
    }
}

/// Claims and attempts deliveries until shut down.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    sender: Sender,
    config: DispatcherConfig,
    wake: Arc<Notify>,
    heartbeat: Heartbeat,
    storage_alarm: Alarm,
    limits: ConcurrencyLimits,
}

impl Dispatcher {
    /// A dispatcher over `store`, sending with `sender`.
    pub fn new(store: Arc<dyn Store>, sender: Sender, config: DispatcherConfig) -> Self {
        Dispatcher {
            store,
            sender,
            limits: ConcurrencyLimits::new(config.per_integration),
            config,
            wake: Arc::new(Notify::new()),
            heartbeat: Heartbeat::default(),
            storage_alarm: Alarm::default(),
        }
    }

    /// Raises `alarm` when a claim or a completion fails for want of space (`/readyz` reads it).
    pub fn with_storage_alarm(mut self, alarm: Alarm) -> Self {
        self.storage_alarm = alarm;
        self
    }

    /// The loop's heartbeat, to tell from outside whether it is still going round.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// Each integration's current concurrency limit on this node (adaptive: see [`crate::adaptive`]).
    pub fn limits(&self) -> ConcurrencyLimits {
        self.limits.clone()
    }

    /// Uses `wake` (shared with the code that enqueues) as this dispatcher's wake-up.
    pub fn with_waker(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Call `notify_one` on this after enqueueing, and the dispatcher claims at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` is cancelled, then waits (at most one lease) for attempts in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        // Often enough for the pause period (tests use seconds), never more than once a second.
        let every = (self.config.pause_after / 4)
            .clamp(Duration::from_secs(1), (self.config.lease() / 2).max(Duration::from_secs(1)));
        let sweeper = tokio::spawn(periodic_jobs(
            self.store.clone(),
            every,
            self.config.pause_after,
            self.config.retention,
            shutdown.clone(),
        ));
        let lease_ms = self.config.lease().as_millis() as i64;
        // Attempts hand their results to one recorder, which writes them in batches (group commit).
        let (results, pending) = mpsc::channel(self.config.concurrency.max(1) * 2);
        let recorder = tokio::spawn(record_results(
            self.store.clone(),
            pending,
            self.wake.clone(),
            self.storage_alarm.clone(),
        ));
        let in_flight = Arc::new(InFlight::default());
        let probe = tokio::spawn(self.limits.clone().probe_lag(shutdown.clone()));
        let mut throttle = Throttle::default();
        loop {
            self.heartbeat.beat();
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            // Under load, slots free one by one as answers come. Gather a few (for at most
            // GATHER_WITHIN) so that one claim — and its visit of the accounts — refills several;
            // with slots to spare (an idle or lightly loaded node) it claims at once.
            // Fewer than `gather` free means attempts are in flight (gather ≤ all the slots).
            let mut permits = vec![first];
            let gather = GATHER.min(self.config.concurrency);
            let until = tokio::time::Instant::now() + GATHER_WITHIN;
            while slots.available_permits() + permits.len() < gather {
                match tokio::time::timeout_at(until, slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => permits.push(p),
                    _ => break,
                }
            }
            let free = (slots.available_permits() + permits.len()) as u32;
            let limit = free.min(self.config.claim_batch);
            let mut shares = in_flight.shares(&self.limits);
            throttle.refresh(&*self.store).await;
            throttle.limit(&mut shares, now_ms());
            let claimed = self
                .storage_alarm
                .watch_storage(self.store.claim_due(now_ms(), limit, lease_ms, &shares).await);
            let claimed = match claimed {
                Ok(c) => {
                    if self.heartbeat.halted.lower() {
                        tracing::info!("deliveries can be decrypted again: claiming resumed");
                    }
                    c
                }
                Err(StoreError::SecretUnreadable(why)) => {
                    // Nothing was claimed (the claim rolled back): the deliveries stay due for a
                    // node whose key opens them. Sending them unsigned is impossible and failing
                    // them would lose them, so this node stops claiming and says so.
                    tracing::error!(
                        error = %why,
                        retry_in_s = self.config.halt_retry.as_secs(),
                        "a due delivery's signing secret cannot be decrypted with this node's \
                         SIPSIM_ENCRYPTION_KEY: stopped claiming; its deliveries are left for \
                         nodes with the right key (see /readyz)"
                    );
                    self.heartbeat.halted.raise(format!(
                        "a signing secret cannot be decrypted with this node's key ({why})"
                    ));
                    permits.clear();
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.halt_retry) => {},
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming deliveries failed; retrying in 1 s");
                    permits.clear();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {},
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                permits.clear();
                if !shares.any_full() {
                    self.idle(&shutdown).await;
                } else {
                    // Due work may be waiting only for a slot of a busy account: claim again as
                    // soon as one frees up, not at the next due time (which has passed). Or for
                    // an account over its rate (counted full) to have a token again: its work is
                    // due already, so the next due time would not wait at all.
                    let poll = throttle
                        .next_token_in(now_ms())
                        .map_or(self.config.fallback_poll, |t| t.min(self.config.fallback_poll));
                    tokio::select! {
                        _ = in_flight.freed.notified() => {},
                        _ = self.wake.notified() => {},
                        _ = tokio::time::sleep(poll) => {},
                        _ = shutdown.cancelled() => {},
                    }
                }
                continue;
            }
            let mut handed_back = Vec::new();
            let trains = trains(claimed, &mut handed_back);
            for train in throttle.spend(trains, &mut handed_back, now_ms()) {
                // A claim brings an account at most its free slots, and only this loop takes
                // slots; this only refuses if the account's limit was cut since the claim (an
                // answer of its endpoint meanwhile) or a store broke that rule, and hands those
                // back.
                if !in_flight.try_take(&train[0].account_id, &self.limits) {
                    handed_back.extend(train.into_iter().map(|d| (d.id, d.lease_token)));
                    continue;
                }
                let slot = match permits.pop() {
                    Some(p) => p,
                    // Only this loop takes slots, so the ones counted free are still free.
                    None => match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let store = self.store.clone();
                let sender = self.sender.clone();
                let schedule = self.config.schedule.clone();
                let results = results.clone();
                let in_flight = in_flight.clone();
                let budget = self.config.timeout;
                let limits = self.limits.clone();
                tokio::spawn(async move {
                    let account = train[0].account_id.clone();
                    let how = Attempting {
                        store: &*store,
                        sender: &sender,
                        schedule: &schedule,
                        limits: &limits,
                    };
                    run_train(how, train, &results, budget).await;
                    in_flight.release(&account, &limits);
                    drop(slot);
                });
            }
            if !handed_back.is_empty()
                && let Err(e) = self.store.unclaim(&handed_back, now_ms()).await
            {
                // Their leases will expire and the sweeper make them due again.
                tracing::warn!(error = %e, "handing back deliveries without a slot failed");
            }
        }
        // Let attempts in flight finish and record their results, for at most one lease.
        let all = self.config.concurrency as u32;
        let _ = tokio::time::timeout(self.config.lease(), slots.acquire_many(all)).await;
        drop(results);
        let _ = tokio::time::timeout(self.config.lease(), recorder).await;
        let _ = sweeper.await;
        let _ = probe.await;
    }

    /// Sleeps until woken, until the next delivery is due, or for the fallback poll.
    async fn idle(&self, shutdown: &CancellationToken) {
        let mut sleep_for = self.config.fallback_poll;
        match self.store.next_due_at().await {
            Ok(Some(due)) => {
                let wait = Duration::from_millis((due - now_ms()).max(0) as u64);
                sleep_for = sleep_for.min(wait);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading the next due time failed"),
        }
        tokio::select! {
            _ = self.wake.notified() => {},
            _ = tokio::time::sleep(sleep_for) => {},
            _ = shutdown.cancelled() => {},
        }
    }
}

/// Attempts (trains) in flight per account, on this node.
#[derive(Debug, Default)]
struct InFlight {
    counts: std::sync::Mutex<HashMap<AccountId, usize>>,
    /// Notified when an account that was using all its slots frees one.
    freed: Notify,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, usize>> {
        // A poisoned lock only means a panic while counting; the counts are still usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The accounts' slots in use and their limits, for a claim to take at most each one's free
    /// slots.
    fn shares(&self, limits: &ConcurrencyLimits) -> Shares {
        let in_use = self
            .lock()
            .iter()
            .map(|(a, n)| (a.clone(), u32::try_from(*n).unwrap_or(u32::MAX)))
            .collect();
        let mut shares = Shares::uniform(limits.cap(), in_use);
        shares.lowered = limits.lowered();
        shares
    }

    /// Takes a slot of `account` if it has one left.
    fn try_take(&self, account: &AccountId, limits: &ConcurrencyLimits) -> bool {
        let limit = limits.limit(account) as usize;
        let mut map = self.lock();
        let n = map.entry(account.clone()).or_default();
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, account: &AccountId, limits: &ConcurrencyLimits) {
        let limit = limits.limit(account) as usize;
        let mut map = self.lock();
        if let Some(n) = map.get_mut(account) {
            if *n >= limit {
                self.freed.notify_one();
            }
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(account);
            }
        }
    }
}

/// A busy dispatcher claims once this many slots are free…
const GATHER: usize = 8;
/// …or this long after the first one freed up, whichever comes first.
const GATHER_WITHIN: Duration = Duration::from_millis(1);
