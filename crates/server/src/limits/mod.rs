//! Request rate limits: token buckets per key (an API client, a client address), in memory.
//!
//! A bucket holds up to `burst` tokens and refills at `rate` per second; a request takes one or is
//! refused with the time until one is back. Buckets of keys that went quiet are dropped once full
//! again, so the map holds only recently active keys. Limits are per node: N nodes allow N times
//! the rate (as the failure limits; docs/SECURITY.md says how to size them).
//!
//! [`failures`] counts failed logins and token requests per client address and subject.

pub mod failures;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// `per_second` with bursts of twice that; `None` when `per_second` is 0 (no limit).
    pub fn with_double_burst(per_second: u32) -> Option<Rate> {
        (per_second > 0).then(|| Rate {
            per_second: f64::from(per_second),
            burst: per_second.saturating_mul(2),
        })
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

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by `K`.
pub struct Limiter<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one token for `key` at `now`.
    pub fn check(&self, key: &K, now: Instant) -> (Decision, Quota) {
        let burst = f64::from(self.rate.burst);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= SWEEP_AT {
            let rate = self.rate.per_second;
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate.per_second).min(burst);
        bucket.at = now;
        let decision = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Decision::Allowed {
                remaining: bucket.tokens as u32,
            }
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate.per_second;
            Decision::Limited {
                retry_after: Duration::from_secs_f64(wait),
            }
        };
        let quota = Quota {
            limit: self.rate.burst,
            remaining: bucket.tokens as u32,
            reset_secs: ((burst - bucket.tokens) / self.rate.per_second).ceil() as u64,
        };
        (decision, quota)
    }
}

/// Whole seconds to put in `Retry-After` (at least 1: `0` would invite an immediate retry).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32) -> Limiter<&'static str> {
        Limiter::new(Rate::with_double_burst(per_second).unwrap())
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = limiter(100);
        let t0 = Instant::now();
        for i in 0..200 {
            assert_eq!(
                l.check(&"a", t0).0,
                Decision::Allowed { remaining: 199 - i }
            );
        }
        let (refused, quota) = l.check(&"a", t0);
        let Decision::Limited { retry_after } = refused else {
            panic!("{refused:?}")
        };
        assert!(retry_after <= Duration::from_millis(10), "{retry_after:?}");
        assert_eq!(quota.remaining, 0);
        assert_eq!(quota.reset_secs, 2);
        // Another key has its own bucket.
        assert!(matches!(l.check(&"b", t0).0, Decision::Allowed { .. }));
        // 100 ms later, 10 more.
        let later = t0 + Duration::from_millis(100);
        let allowed = (0..20)
            .filter(|_| matches!(l.check(&"a", later).0, Decision::Allowed { .. }))
            .count();
        assert_eq!(allowed, 10);
        // A quiet second refills no more than the burst.
        let quiet = t0 + Duration::from_secs(60);
        assert_eq!(l.check(&"a", quiet).0, Decision::Allowed { remaining: 199 });
    }

    #[test]
    fn idle_keys_are_swept() {
        let l: Limiter<String> = Limiter::new(Rate::with_double_burst(1).unwrap());
        let t0 = Instant::now();
        for i in 0..SWEEP_AT {
            l.check(&i.to_string(), t0);
        }
        l.check(&"late".to_owned(), t0 + Duration::from_secs(5));
        assert_eq!(l.buckets.lock().unwrap().len(), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn zero_means_no_limit() {
        assert_eq!(Rate::with_double_burst(0), None);
    }
}
