//! Request rate limits: token buckets per key (an API client), in memory.
//!
//! A bucket holds up to `burst` tokens and refills at `rate` per second; a request takes one or is
//! refused with the time until one is back. The buckets are `governor`'s (GCRA: one timestamp per
//! key, in a mutex-held map: no dashmap); this module only turns its answers into the
//! `RateLimit-*` figures and the `Retry-After` the API sends. Keys that went quiet are dropped once
//! the map holds 10,000, so it holds only recently active ones. Limits are per node: N nodes
//! allow N times the rate (as the failure limits; docs/SECURITY.md says how to size them).
//!
//! [`failures`] counts failed logins and token requests per client address and subject. It stays
//! our own: it must count an attempt *before* the awaited check and forgive it after a success,
//! which no rate-limiting crate does (docs/DECISIONS.md, "Rate limits").

pub mod failures;

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota as Gcra, RateLimiter};

/// How many keys a limiter holds before it sweeps out idle ones.
const SWEEP_AT: usize = 10_000;

/// A rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: requests allowed at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    /// `per_second` tokens a second, `burst` at most.
    pub const fn new(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    /// `per_second` with bursts of twice that; `None` when `per_second` is 0 (no limit).
    pub fn with_double_burst(per_second: u32) -> Option<Rate> {
        (per_second > 0).then(|| Rate {
            per_second: f64::from(per_second),
            burst: per_second.saturating_mul(2),
        })
    }

    /// The same as governor's quota: one token every `1 / per_second` s, `burst` at most (a rate
    /// of 0 or a burst of 0, which configuration never makes, count as the smallest there is).
    fn gcra(self) -> Gcra {
        let every = Duration::from_secs_f64(1.0 / self.per_second.max(1e-6));
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Gcra::with_period(every.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Gcra::per_second(NonZeroU32::MAX))
            .allow_burst(burst)
    }
}

/// What a limiter decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Go ahead; this many requests are left right now.
    Allowed { remaining: u32 },
    /// Refused; a token is back after this long.
    Limited { retry_after: Duration },
}

/// What a limited response tells the caller, in `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// The burst size.
    pub limit: u32,
    /// Requests left now.
    pub remaining: u32,
    /// Seconds until the bucket is full again (rounded up).
    pub reset_secs: u64,
}

type Buckets<K, C> = RateLimiter<K, DefaultKeyedStateStore<K>, C, StateInformationMiddleware>;

/// Token buckets keyed by `K`, on `C`'s time (the real clock; a fake one in tests).
pub struct Limiter<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    rate: Rate,
    /// How long one token takes to come back (governor's replenish interval).
    every: Duration,
    buckets: Buckets<K, C>,
    clock: C,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Limiter::with_clock(rate, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Limiter<K, C> {
    fn with_clock(rate: Rate, clock: C) -> Self {
        let store = DefaultKeyedStateStore::default();
        let quota = rate.gcra();
        let buckets =
            RateLimiter::<K, _, C, NoOpMiddleware<C::Instant>>::new(quota, store, clock.clone())
                .with_middleware::<StateInformationMiddleware>();
        Limiter { rate, every: quota.replenish_interval(), buckets, clock }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one token for `key`.
    pub fn check(&self, key: &K) -> (Decision, Quota) {
        if self.buckets.len() >= SWEEP_AT {
            self.buckets.retain_recent();
        }
        let quota = |remaining: u32| Quota {
            limit: self.rate.burst,
            remaining,
            reset_secs: (self.every * self.rate.burst.saturating_sub(remaining))
                .as_secs_f64()
                .ceil() as u64,
        };
        match self.buckets.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                (Decision::Allowed { remaining }, quota(remaining))
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.clock.now());
                (Decision::Limited { retry_after }, quota(0))
            }
        }
    }
}

/// Whole seconds to put in `Retry-After` (at least 1: `0` would invite an immediate retry).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(per_second: u32) -> (Limiter<&'static str, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let rate = Rate::with_double_burst(per_second).unwrap();
        (Limiter::with_clock(rate, clock.clone()), clock)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let (l, clock) = limiter(100);
        for i in 0..200 {
            assert_eq!(l.check(&"a").0, Decision::Allowed { remaining: 199 - i });
        }
        let (refused, quota) = l.check(&"a");
        let Decision::Limited { retry_after } = refused else { panic!("{refused:?}") };
        assert!(retry_after <= Duration::from_millis(10), "{retry_after:?}");
        assert_eq!(quota.remaining, 0);
        assert_eq!(quota.reset_secs, 2);
        // Another key has its own bucket.
        assert!(matches!(l.check(&"b").0, Decision::Allowed { .. }));
        // 100 ms later, 10 more.
        clock.advance(Duration::from_millis(100));
        let allowed =
            (0..20).filter(|_| matches!(l.check(&"a").0, Decision::Allowed { .. })).count();
        assert_eq!(allowed, 10);
        // A quiet minute refills no more than the burst.
        clock.advance(Duration::from_secs(60));
        assert_eq!(l.check(&"a").0, Decision::Allowed { remaining: 199 });
    }

    #[test]
    fn idle_keys_are_swept() {
        let clock = FakeRelativeClock::default();
        let l: Limiter<String, _> =
            Limiter::with_clock(Rate::with_double_burst(1).unwrap(), clock.clone());
        for i in 0..SWEEP_AT {
            l.check(&i.to_string());
        }
        clock.advance(Duration::from_secs(5));
        l.check(&"late".to_owned());
        assert_eq!(l.buckets.len(), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn fractional_rates_refill_slowly() {
        let clock = FakeRelativeClock::default();
        let rate = Rate::new(0.5, 2);
        let l: Limiter<&str, _> = Limiter::with_clock(rate, clock.clone());
        assert!(matches!(l.check(&"a").0, Decision::Allowed { remaining: 1 }));
        assert!(matches!(l.check(&"a").0, Decision::Allowed { remaining: 0 }));
        let (refused, quota) = l.check(&"a");
        let Decision::Limited { retry_after } = refused else { panic!("{refused:?}") };
        assert_eq!(retry_after, Duration::from_secs(2));
        assert_eq!(quota.reset_secs, 4);
        clock.advance(Duration::from_secs(2));
        assert!(matches!(l.check(&"a").0, Decision::Allowed { .. }));
    }

    #[test]
    fn zero_means_no_limit() {
        assert_eq!(Rate::with_double_burst(0), None);
    }
}
