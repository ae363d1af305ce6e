//! A customer's maximum delivery rate (`max_rate`, set on the webhook page), kept by each node's
//! dispatcher: a token bucket per throttled account, holding at most one second's deliveries (and
//! at least one).
//!
//! It is counted before the claim, so nothing is claimed only to be handed back: an account out of
//! tokens gets no slot in that claim, one with `k` whole tokens at most `k` more. A train (one
//! call's deliveries brought together) may hold more than `k`: its first `k` go, the rest are handed
//! back and wait for their turn, so a call's order holds. Events above the rate stay in the queue,
//! due; the dispatcher claims again when the next token arrives. Rates are re-read every second.
//!
//! Per node: on PostgreSQL, `n` nodes may together deliver up to `n` times the rate (see
//! docs/DECISIONS.md, "A delivery throttle").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sipsim_core::queue::{ClaimedDelivery, Shares};
use sipsim_core::store::DeliveryRate;
use sipsim_core::{AccountId, DeliveryId, Store};

/// How often the rates are read again.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// The throttled accounts' rates and buckets on this node.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    rates: HashMap<AccountId, DeliveryRate>,
    buckets: HashMap<AccountId, Bucket>,
    read_at: Option<Instant>,
}

fn burst(rate: DeliveryRate) -> f64 {
    rate.per_second().max(1.0)
}

impl Throttle {
    /// Reads the rates again if a second has passed; on a failure, keeps the ones it has.
    pub(crate) async fn refresh(&mut self, store: &dyn Store) {
        if self.read_at.is_some_and(|at| at.elapsed() < REFRESH) {
            return;
        }
        self.read_at = Some(Instant::now());
        match store.delivery_rates().await {
            Ok(rates) => {
                self.rates = rates.into_iter().collect();
                self.buckets.retain(|account, _| self.rates.contains_key(account));
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the delivery rates failed; keeping the last ones")
            }
        }
    }

    /// Sets the rates directly (tests).
    #[cfg(test)]
    fn with_rates(rates: &[(AccountId, DeliveryRate)]) -> Self {
        Throttle { rates: rates.iter().cloned().collect(), ..Throttle::default() }
    }

    /// `account`'s tokens now, the bucket refilled for the time since it was last looked at.
    fn tokens(&mut self, account: &AccountId, rate: DeliveryRate, now_ms: i64) -> f64 {
        let bucket = self
            .buckets
            .entry(account.clone())
            .or_insert(Bucket { tokens: burst(rate), at_ms: now_ms });
        let elapsed = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second()).min(burst(rate));
        bucket.at_ms = now_ms.max(bucket.at_ms);
        bucket.tokens
    }

    /// Limits `shares` to the tokens: a throttled account out of tokens is counted full (no slot);
    /// one with `k` whole tokens may be given at most `k` more. Whether any account is out.
    pub(crate) fn limit(&mut self, shares: &mut Shares, now_ms: i64) -> bool {
        let mut any_out = false;
        let rates: Vec<(AccountId, DeliveryRate)> =
            self.rates.iter().map(|(a, r)| (a.clone(), *r)).collect();
        for (account, rate) in rates {
            let whole = self.tokens(&account, rate, now_ms).floor() as u32;
            let used = shares.in_use.iter().find(|(a, _)| *a == account).map_or(0, |(_, n)| *n);
            if whole == 0 {
                any_out = true;
                shares.in_use.retain(|(a, _)| *a != account);
                shares.in_use.push((account, shares.per_account));
            } else {
                let limit = shares.limit(&account).min(used.saturating_add(whole));
                shares.lowered.retain(|(a, _)| *a != account);
                shares.lowered.push((account, limit));
            }
        }
        any_out
    }

    /// Spends tokens on what a claim brought: of each throttled account's trains, as many
    /// deliveries as it has whole tokens go, each train cut after its last one that goes; the rest
    /// are added to `handed_back`. Returns the trains that go.
    pub(crate) fn spend(
        &mut self,
        trains: Vec<Vec<ClaimedDelivery>>,
        handed_back: &mut Vec<(DeliveryId, String)>,
        now_ms: i64,
    ) -> Vec<Vec<ClaimedDelivery>> {
        if self.rates.is_empty() {
            return trains;
        }
        let mut going = Vec::with_capacity(trains.len());
        for mut train in trains {
            let account = train[0].account_id.clone();
            let Some(rate) = self.rates.get(&account).copied() else {
                going.push(train);
                continue;
            };
            let whole = self.tokens(&account, rate, now_ms).floor().max(0.0) as usize;
            let kept = train.len().min(whole);
            handed_back.extend(train.drain(kept..).map(|d| (d.id, d.lease_token)));
            if let Some(bucket) = self.buckets.get_mut(&account) {
                bucket.tokens -= kept as f64;
            }
            if !train.is_empty() {
                going.push(train);
            }
        }
        going
    }

    /// How long until an account out of tokens has one again, if one is out.
    pub(crate) fn next_token_in(&self, now_ms: i64) -> Option<Duration> {
        self.buckets
            .iter()
            .filter_map(|(account, bucket)| {
                let rate = self.rates.get(account)?;
                let missing = 1.0 - bucket.tokens;
                (missing > 0.0).then(|| {
                    let since = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
                    let wait = (missing / rate.per_second() - since).max(0.0);
                    Duration::from_secs_f64(wait.min(3600.0))
                })
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> DeliveryRate {
        DeliveryRate::parse(text).unwrap()
    }

    #[test]
    fn an_account_out_of_tokens_gets_no_slot_and_one_with_some_gets_that_many() {
        let (slow, free) = (AccountId::generate(), AccountId::generate());
        let mut throttle = Throttle::with_rates(&[(slow.clone(), rate("2"))]);
        let mut shares = Shares::uniform(16, vec![(slow.clone(), 1)]);
        assert!(!throttle.limit(&mut shares, 0));
        // A full bucket holds a second's worth: 2 more than the one in flight.
        assert_eq!(shares.free(&slow), 2);
        assert_eq!(shares.free(&free), 16, "an account without a rate is untouched");
        // Both spent: no slot until the next token, half a second later.
        throttle.buckets.get_mut(&slow).unwrap().tokens = 0.0;
        let mut shares = Shares::uniform(16, Vec::new());
        assert!(throttle.limit(&mut shares, 0));
        assert_eq!(shares.free(&slow), 0);
        assert_eq!(throttle.next_token_in(0), Some(Duration::from_millis(500)));
        let mut shares = Shares::uniform(16, Vec::new());
        assert!(!throttle.limit(&mut shares, 500));
        assert_eq!(shares.free(&slow), 1);
    }
}
