//! `sipsimd simulate`: realistic telephony traffic through the ingest path.
//!
//! Each account gets a simulated company (a main number and a dial chain of direct lines); calls and
//! SMS start as a Poisson process sized so that events flow at `rate` per second on average; each
//! call's events are emitted at their (optionally accelerated) times, validated exactly as
//! `POST /internal/v1/events` validates them, and stored in batches. When the run ends, calls still
//! in progress are fast-forwarded, so every lifecycle is complete.

pub mod calls;
mod company;
mod content;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use serde::Serialize;
use serde_json::json;
use sipsim_core::clock::now_ms;
use sipsim_core::queue::IngestOutcome;
use sipsim_core::{AccountId, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::calls::{Ids, Planned};
use self::company::{Company, Rng};

/// Most events stored in one batch.
const BATCH: usize = 1000;
/// Lifecycles drawn to estimate how many events one has.
const CALIBRATION_SAMPLES: usize = 2000;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateConfig {
    /// The accounts making calls.
    pub accounts: Vec<AccountId>,
    /// Events per second on average, across all accounts.
    pub rate: f64,
    /// How long to start new calls for (`None`: until shut down).
    pub duration: Option<Duration>,
    /// How much faster than real time calls unfold.
    pub speed: f64,
    /// The generator's seed.
    pub seed: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Calls and SMS started.
    pub interactions: u64,
    /// Events stored.
    pub events: u64,
    /// Of which a delivery was queued for.
    pub enqueued: u64,
    /// Events stored per event name.
    pub by_event: BTreeMap<&'static str, u64>,
}

/// An event waiting for its time.
struct Queued {
    account: usize,
    planned: Planned,
}

/// Runs the simulation until `duration` has passed or `shutdown` is cancelled, then fast-forwards
/// the calls in progress. `wake` is told after every stored batch (the in-process dispatcher);
/// `progress` is called about every five seconds.
pub async fn run(
    store: &dyn Store,
    wake: Option<Arc<Notify>>,
    config: &SimulateConfig,
    shutdown: CancellationToken,
    progress: impl Fn(&Report),
) -> anyhow::Result<Report> {
    if config.accounts.is_empty() {
        bail!("no accounts to simulate");
    }
    if !(config.rate > 0.0 && config.rate.is_finite()) {
        bail!("--rate must be a positive number of events per second");
    }
    if !(config.speed > 0.0 && config.speed.is_finite()) {
        bail!("--speed must be a positive number");
    }
    let mut rng = Rng::new(config.seed);
    let companies: Vec<Company> =
        config.accounts.iter().map(|_| Company::generate(&mut rng)).collect();
    let started = now_ms();
    let mut ids = Ids::starting_at((started as u64 / 1000 % 100_000) * 10_000);
    let per_call = events_per_lifecycle(&rng, &companies[0]);
    // Mean real time between two interactions, in ms.
    let mean_gap_ms = 1000.0 * per_call / config.rate;

    let deadline =
        config.duration.map(|d| started + i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut waiting: BTreeMap<(i64, u64), Queued> = BTreeMap::new();
    let mut seq: u64 = 0;
    let mut next_start = started as f64;
    let mut report = Report::default();
    let mut last_progress = started;

    loop {
        let now = now_ms();
        let ending = shutdown.is_cancelled() || deadline.is_some_and(|d| now >= d);
        if !ending {
            while next_start <= now as f64 {
                let account = (rng.next_u64() % companies.len() as u64) as usize;
                // The simulated clock runs `speed` times faster from the start of the run.
                let sim_start = started + ((next_start - started as f64) * config.speed) as i64;
                for planned in calls::lifecycle(&mut rng, &companies[account], &mut ids, sim_start)
                {
                    let offset = (planned.at_ms - sim_start) as f64 / config.speed;
                    let due = (next_start + offset) as i64;
                    seq += 1;
                    waiting.insert((due, seq), Queued { account, planned });
                }
                report.interactions += 1;
                next_start += rng.exponential(mean_gap_ms).max(0.0);
            }
        }
        // Everything due now (or everything, when fast-forwarding at the end), in batches.
        loop {
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                match waiting.first_entry() {
                    Some(entry) if ending || entry.key().0 <= now => batch.push(entry.remove()),
                    _ => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            store_batch(store, &config.accounts, &batch, &mut report).await?;
            if let Some(w) = &wake {
                w.notify_one();
            }
        }
        if ending {
            break;
        }
        if now - last_progress >= 5000 {
            last_progress = now;
            progress(&report);
        }
        let next_due = waiting.keys().next().map_or(i64::MAX, |k| k.0);
        let until = next_due.min(next_start as i64).min(now + 100).max(now + 1);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis((until - now) as u64)) => {}
            () = shutdown.cancelled() => {}
        }
    }
    Ok(report)
}

/// The mean number of events in one lifecycle, measured on a copy of the generator.
fn events_per_lifecycle(rng: &Rng, company: &Company) -> f64 {
    let mut sample = rng.clone();
    let mut ids = Ids::starting_at(0);
    let total: usize = (0..CALIBRATION_SAMPLES)
        .map(|_| calls::lifecycle(&mut sample, company, &mut ids, 0).len())
        .sum();
    total as f64 / CALIBRATION_SAMPLES as f64
}

/// Validates a batch as the ingest route does and stores it in one transaction.
async fn store_batch(
    store: &dyn Store,
    accounts: &[AccountId],
    batch: &[Queued],
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut messages = Vec::with_capacity(batch.len());
    for (i, q) in batch.iter().enumerate() {
        let item = json!({
            "account_id": accounts[q.account],
            "event": q.planned.event.name(),
            "payload": q.planned.payload,
        });
        let message = crate::ingest::parse_item(i, &item).map_err(|errors| {
            anyhow!("the simulator made an invalid event: {}", errors.join("; "))
        })?;
        messages.push(message);
    }
    let outcomes = store.ingest(&messages, now_ms()).await?;
    for (q, outcome) in batch.iter().zip(&outcomes) {
        report.events += 1;
        *report.by_event.entry(q.planned.event.name()).or_default() += 1;
        if matches!(outcome, IngestOutcome::Enqueued { .. }) {
            report.enqueued += 1;
        }
    }
    Ok(())
}
