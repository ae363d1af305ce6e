//! Failure limits: how many failed attempts (logins, token requests) an address may make.
//!
//! What is counted is a *failure* per (client address, subject) pair — the subject being the email
//! of a login or the `client_id` of a token request — never a success, so nobody can lock out a user
//! or an API client they do not control by failing on purpose from elsewhere: a pair is refused
//! after [`FailurePolicy::per_pair`] failures, and an address after failures on
//! [`FailurePolicy::subjects_per_address`] distinct subjects (someone trying many accounts).
//!
//! An attempt is counted *before* it is checked, and forgotten if it succeeds: a limit that counted
//! after an awaited check would let every concurrent request through before the first was counted.
//!
//! IPv6 addresses count by their /64, which one host usually has whole. Memory is bounded: a pair
//! keeps at most `per_pair` instants, an address at most `subjects_per_address` pairs (beyond that
//! it is refused, so nothing new is added), and idle addresses are swept out.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many addresses are held before the oldest are forgotten (a few hundred bytes each).
const MAX_ADDRESSES: usize = 100_000;
/// Idle addresses are swept at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The limits of one kind of attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Failures counted within this window.
    pub window: Duration,
    /// Failures of one subject from one address before that pair is refused.
    pub per_pair: usize,
    /// Distinct subjects failed from one address before the address is refused.
    pub subjects_per_address: usize,
}

impl FailurePolicy {
    /// Dashboard logins: 5 wrong passwords for one email from one address, or wrong passwords for
    /// 20 emails from one address, per 15 minutes.
    pub const LOGIN: FailurePolicy = FailurePolicy {
        window: Duration::from_secs(15 * 60),
        per_pair: 5,
        subjects_per_address: 20,
    };

    /// Token requests: 10 failures for one `client_id` (or of unreadable requests) from one address,
    /// or failures for 20 `client_id`s from one address, per minute. Client secrets are 256-bit
    /// random, so this is against floods, not guessing.
    pub const TOKEN: FailurePolicy =
        FailurePolicy { window: Duration::from_secs(60), per_pair: 10, subjects_per_address: 20 };
}

/// The key an address counts under: itself, or its /64 for IPv6 (IPv4-mapped forms as IPv4).
/// `None` (the peer is unknown) is a key of its own.
fn address_key(address: Option<IpAddr>) -> Option<IpAddr> {
    match address?.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            Some(IpAddr::V6(bits.into()))
        }
        v4 => Some(v4),
    }
}

#[derive(Default)]
struct Address {
    /// Failure instants (oldest first) per subject, by the subject's keyed hash.
    subjects: HashMap<u64, VecDeque<Instant>>,
}

impl Address {
    fn forget_before(&mut self, cutoff: Option<Instant>) {
        let Some(cutoff) = cutoff else { return };
        self.subjects.retain(|_, times| {
            while times.front().is_some_and(|t| *t <= cutoff) {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    fn latest(&self) -> Option<Instant> {
        self.subjects.values().filter_map(|t| t.back()).max().copied()
    }
}

struct Table {
    addresses: HashMap<Option<IpAddr>, Address>,
    swept_at: Instant,
}

/// Counts failed attempts per (address, subject); see the module's comment.
pub struct FailureLimiter {
    policy: FailurePolicy,
    hasher: RandomState,
    table: Mutex<Table>,
}

/// An attempt that was let through and counted as a failure until it is known to have succeeded.
#[must_use = "call succeeded() or forget() when the attempt must not count as a failure"]
pub struct Counted<'a> {
    limiter: &'a FailureLimiter,
    address: Option<IpAddr>,
    subject: u64,
    at: Instant,
}

impl Counted<'_> {
    /// The attempt succeeded: it is not a failure, and the pair's earlier failures are forgiven.
    pub fn succeeded(self) {
        self.limiter.uncount(self.address, self.subject, None);
    }

    /// The attempt was not made after all (no capacity to check it): it does not count.
    pub fn forget(self) {
        self.limiter.uncount(self.address, self.subject, Some(self.at));
    }

    /// The attempt failed: it stays counted (as it was from the start).
    pub fn failed(self) {}
}

impl FailureLimiter {
    /// A limiter with `policy`.
    pub fn new(policy: FailurePolicy) -> Self {
        FailureLimiter {
            policy,
            hasher: RandomState::new(),
            table: Mutex::new(Table { addresses: HashMap::new(), swept_at: Instant::now() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A poisoned lock only means a panic while counting; the counts are still usable.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts an attempt of `subject` from `address` now, or refuses it with how long to wait.
    pub fn attempt(&self, address: Option<IpAddr>, subject: &str) -> Result<Counted<'_>, Duration> {
        self.attempt_at(address, subject, Instant::now())
    }

    fn attempt_at(
        &self,
        address: Option<IpAddr>,
        subject: &str,
        now: Instant,
    ) -> Result<Counted<'_>, Duration> {
        let address = address_key(address);
        let subject = self.hasher.hash_one(subject);
        let window = self.policy.window;
        let cutoff = now.checked_sub(window);
        let mut table = self.lock();
        self.sweep(&mut table, now, cutoff);
        let entry = table.addresses.entry(address).or_default();
        entry.forget_before(cutoff);
        let wait_from = |t: Instant| window.saturating_sub(now.saturating_duration_since(t));
        if let Some(times) = entry.subjects.get(&subject)
            && times.len() >= self.policy.per_pair
        {
            return Err(times.front().map_or(window, |t| wait_from(*t)));
        }
        if entry.subjects.len() >= self.policy.subjects_per_address {
            // Free again when the subject whose last failure is oldest leaves the window.
            let soonest = entry.subjects.values().filter_map(|t| t.back()).min();
            return Err(soonest.map_or(window, |t| wait_from(*t)));
        }
        entry.subjects.entry(subject).or_default().push_back(now);
        Ok(Counted { limiter: self, address, subject, at: now })
    }

    /// Removes the attempt made `at` (or, with `None`, every failure of the pair).
    fn uncount(&self, address: Option<IpAddr>, subject: u64, at: Option<Instant>) {
        let mut table = self.lock();
        let Some(entry) = table.addresses.get_mut(&address) else {
            return;
        };
        if let Some(times) = entry.subjects.get_mut(&subject) {
            match at {
                Some(at) => {
                    if let Some(i) = times.iter().position(|t| *t == at) {
                        times.remove(i);
                    }
                }
                None => times.clear(),
            }
            if times.is_empty() {
                entry.subjects.remove(&subject);
            }
        }
        if entry.subjects.is_empty() {
            table.addresses.remove(&address);
        }
    }

    /// Drops idle addresses (at most once a second, and only when there are many), then, if a
    /// flood from very many addresses still leaves too many, those idle longest.
    fn sweep(&self, table: &mut Table, now: Instant, cutoff: Option<Instant>) {
        if table.addresses.len() < 10_000 || now.duration_since(table.swept_at) < SWEEP_EVERY {
            return;
        }
        table.swept_at = now;
        table.addresses.retain(|_, a| {
            a.forget_before(cutoff);
            !a.subjects.is_empty()
        });
        if table.addresses.len() > MAX_ADDRESSES {
            let mut by_age: Vec<(Option<Instant>, Option<IpAddr>)> =
                table.addresses.iter().map(|(k, a)| (a.latest(), *k)).collect();
            by_age.sort_unstable_by_key(|(latest, _)| *latest);
            for (_, key) in by_age.iter().take(by_age.len() - MAX_ADDRESSES / 2) {
                table.addresses.remove(key);
            }
            tracing::warn!(
                addresses = MAX_ADDRESSES,
                "failed attempts from very many addresses: the oldest were forgotten"
            );
        }
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.lock().addresses.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FailurePolicy =
        FailurePolicy { window: Duration::from_secs(60), per_pair: 3, subjects_per_address: 4 };

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_pair_is_refused_after_its_failures_and_nobody_else_is() {
        let l = FailureLimiter::new(POLICY);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.attempt_at(ip("1.2.3.4"), "a@x.com", t0).unwrap().failed();
        }
        let wait = l.attempt_at(ip("1.2.3.4"), "a@x.com", t0).err().unwrap();
        assert_eq!(wait, Duration::from_secs(60));
        // Another subject from the same address, and the same subject from another address, go on.
        l.attempt_at(ip("1.2.3.4"), "b@x.com", t0).unwrap().succeeded();
        l.attempt_at(ip("5.6.7.8"), "a@x.com", t0).unwrap().succeeded();
        // The window passes.
        let later = t0 + Duration::from_secs(61);
        assert!(l.attempt_at(ip("1.2.3.4"), "a@x.com", later).is_ok());
    }

    #[test]
    fn an_address_is_refused_after_failures_on_many_subjects() {
        let l = FailureLimiter::new(POLICY);
        let t0 = Instant::now();
        for s in ["a", "b", "c", "d"] {
            l.attempt_at(ip("1.2.3.4"), s, t0).unwrap().failed();
        }
        assert!(l.attempt_at(ip("1.2.3.4"), "e", t0).is_err());
        assert!(l.attempt_at(ip("1.2.3.4"), "a", t0).is_err());
        assert!(l.attempt_at(ip("9.9.9.9"), "e", t0).is_ok());
    }

    #[test]
    fn attempts_count_before_they_are_checked() {
        let l = FailureLimiter::new(POLICY);
        let t0 = Instant::now();
        // Three in flight at once: the fourth is refused although none has failed yet.
        let in_flight: Vec<_> =
            (0..3).map(|_| l.attempt_at(ip("1.2.3.4"), "a", t0).unwrap()).collect();
        assert!(l.attempt_at(ip("1.2.3.4"), "a", t0).is_err());
        // One turns out right: the pair's failures are forgiven.
        let mut in_flight = in_flight.into_iter();
        in_flight.next().unwrap().succeeded();
        assert!(l.attempt_at(ip("1.2.3.4"), "a", t0).is_ok());
        // One that was never checked does not count.
        let l = FailureLimiter::new(POLICY);
        for _ in 0..5 {
            l.attempt_at(ip("1.2.3.4"), "a", t0).unwrap().forget();
        }
        assert_eq!(l.addresses(), 0);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_v4_as_v4() {
        let l = FailureLimiter::new(POLICY);
        let t0 = Instant::now();
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"] {
            l.attempt_at(ip(host), "a", t0).unwrap().failed();
        }
        assert!(l.attempt_at(ip("2001:db8::9"), "a", t0).is_err());
        assert!(l.attempt_at(ip("2001:db8:0:1::1"), "a", t0).is_ok());
        for _ in 0..3 {
            l.attempt_at(ip("::ffff:1.2.3.4"), "a", t0).unwrap().failed();
        }
        assert!(l.attempt_at(ip("1.2.3.4"), "a", t0).is_err());
    }

    #[test]
    fn idle_addresses_are_swept() {
        let l = FailureLimiter::new(POLICY);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            l.attempt_at(Some(IpAddr::from(i.to_be_bytes())), "a", t0).unwrap().failed();
        }
        let later = t0 + Duration::from_secs(120);
        l.attempt_at(ip("1.2.3.4"), "a", later).unwrap().failed();
        assert_eq!(l.addresses(), 1);
    }
}
