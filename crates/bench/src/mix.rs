//! What the scenarios send: SIPSIM's own traffic (the simulator's calls and SMS, in its
//! proportions), calls only, or SMS only.
//!
//! Each account is one simulated company whose calls overlap as a PBX's do: lifecycles start as a
//! Poisson process and every event is placed at its simulated time, so a call's events are in order
//! and interleaved with other calls' events, as SIPSIM emits them. Generated before a run, so the
//! generator costs nothing while it is measured.

use sipsim_core::Event;
use sipsim_server::simulate::calls::{Company, Ids, Planned, Rng, lifecycle};

/// Which traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// The simulator's: incoming calls 55 %, outgoing 30 %, SMS 15 % of interactions; 13 of the 14
    /// events belong to a call (`pbx_id`, or `call_id` for speech, summary and rating).
    Sipsim,
    /// The simulator's calls without its SMS: every event ordered behind its call's earlier ones.
    Calls,
    /// `sms` only: no ordering key, the cheapest path.
    Sms,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::Sipsim => "SIPSIM mix",
            Mix::Calls => "call events",
            Mix::Sms => "sms only",
        }
    }

    fn wants(self, lifecycle: &[Planned]) -> bool {
        let is_sms = lifecycle.first().is_some_and(|p| p.event == Event::Sms);
        match self {
            Mix::Sipsim => true,
            Mix::Calls => !is_sms,
            Mix::Sms => is_sms,
        }
    }
}

/// One ingest item and the account (index) it is for.
#[derive(Debug, Clone)]
pub struct Item {
    pub account: usize,
    pub body: String,
}

/// Mean gap between one company's interactions, simulated: with calls lasting minutes, a company has
/// several in progress at once, so its calls' events interleave.
const MEAN_GAP_MS: f64 = 20_000.0;

/// `n` items of `mix` over `accounts`, in simulated time order. Deterministic for a seed.
pub fn items(mix: Mix, accounts: &[String], n: usize, seed: u64) -> Vec<Item> {
    let mut rng = Rng::new(seed);
    let companies: Vec<Company> = accounts.iter().map(|_| Company::generate(&mut rng)).collect();
    let mut clocks = vec![1_767_225_600_000i64; accounts.len()];
    let mut ids = Ids::starting_at(seed.wrapping_mul(1_000_000_007) % 1_000_000_000);
    // (time, order of generation, account, planned): sorting by the first two keeps each
    // lifecycle's own order for events at equal times.
    let mut planned: Vec<(i64, usize, usize, Planned)> = Vec::with_capacity(n + n / 4);
    // Generated past `n`, so that the first `n` in time are not only the calls that started first.
    while planned.len() < n + n / 4 {
        for (a, company) in companies.iter().enumerate() {
            let events = loop {
                let events = lifecycle(&mut rng, company, &mut ids, clocks[a]);
                if mix.wants(&events) {
                    break events;
                }
            };
            clocks[a] += rng.exponential(MEAN_GAP_MS) as i64;
            for p in events {
                let order = planned.len();
                planned.push((p.at_ms, order, a, p));
            }
        }
    }
    planned.sort_by_key(|(at, order, _, _)| (*at, *order));
    planned.truncate(n);
    planned
        .into_iter()
        .map(|(_, _, account, p)| Item {
            account,
            body: format!(
                r#"{{"account_id":"{}","event":"{}","payload":{}}}"#,
                accounts[account],
                p.event.name(),
                p.payload
            ),
        })
        .collect()
}

/// `items` as JSON arrays of `per_request` each.
pub fn batches(items: &[Item], per_request: usize) -> Vec<Vec<u8>> {
    items
        .chunks(per_request.max(1))
        .map(|chunk| {
            let mut body = String::with_capacity(chunk.iter().map(|i| i.body.len() + 1).sum());
            body.push('[');
            for (k, item) in chunk.iter().enumerate() {
                if k > 0 {
                    body.push(',');
                }
                body.push_str(&item.body);
            }
            body.push(']');
            body.into_bytes()
        })
        .collect()
}

/// What share of `items` carries an ordering key (belongs to a call).
pub fn ordered_share(items: &[Item]) -> f64 {
    let keyed = items
        .iter()
        .filter(|i| i.body.contains("\"pbx_id\"") || i.body.contains("\"call_id\""))
        .count();
    keyed as f64 / items.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mix_has_the_traffic_it_names() {
        let accounts: Vec<String> = (0..3).map(|i| format!("acc_{i}")).collect();
        let sipsim = items(Mix::Sipsim, &accounts, 2_000, 7);
        assert_eq!(sipsim.len(), 2_000);
        let share = ordered_share(&sipsim);
        assert!((0.8..0.99).contains(&share), "ordered share {share}");
        assert_eq!(ordered_share(&items(Mix::Calls, &accounts, 500, 7)), 1.0);
        assert_eq!(ordered_share(&items(Mix::Sms, &accounts, 500, 7)), 0.0);
        // Every account sends, and a call's events stay in order (start before end).
        for a in 0..3 {
            assert!(sipsim.iter().any(|i| i.account == a));
        }
        let pos = |needle: &str, event: &str| {
            sipsim.iter().position(|i| i.body.contains(needle) && i.body.contains(event))
        };
        let first_call = sipsim
            .iter()
            .find_map(|i| {
                let at = i.body.find("\"pbx_id\":\"")? + 10;
                Some(i.body[at..at + 17].to_owned())
            })
            .expect("a call");
        if let (Some(start), Some(end)) =
            (pos(&first_call, "_call_start\""), pos(&first_call, "_call_end\""))
        {
            assert!(start < end);
        }
    }
}
