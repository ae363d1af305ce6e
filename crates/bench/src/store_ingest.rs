//! Ingest without HTTP: what a call event costs against an SMS in the two parts of an ingest
//! request that do the work, parsing and validating the batch, and writing it to the store.
//!
//! The throughput scenarios measure ingest end to end while deliveries compete for the same cores
//! and, on SQLite, the same writer; this one measures each part alone, on a fresh database, so a
//! change to the ordered path shows apart from the deliveries. It is still this machine's timing:
//! compare binaries interleaved, not one run against another day's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::json;
use sipsim_core::queue::NewMessage;

use crate::fixture::{self, Backend};
use crate::mix::{self, Mix};
use crate::report::Check;
use crate::scenarios::{Ctx, Section, median};

/// Ingest requests in flight at once, as in the throughput scenarios' batched loads.
const CONNECTIONS: usize = 4;

/// One run of one mix, per event.
#[derive(Debug, Clone, Copy)]
struct Cost {
    /// Microseconds parsing and validating, one thread.
    parse_us: f64,
    /// Microseconds in the store's ingest calls.
    store_us: f64,
    /// Bytes of request body.
    bytes: f64,
}

async fn run(backend: Backend, mix: Mix, events: usize, seed: u64) -> anyhow::Result<Cost> {
    let (db, store, ids) = fixture::store_with_accounts(backend, 20).await?;
    let accounts: Vec<String> = ids.iter().map(|a| a.as_str().to_owned()).collect();
    let items = mix::items(mix, &accounts, events, seed);
    let bodies = mix::batches(&items, 1_000);
    let bytes = bodies.iter().map(Vec::len).sum::<usize>() as f64 / events as f64;

    let t = Instant::now();
    let mut batches: Vec<Vec<NewMessage>> = Vec::with_capacity(bodies.len());
    for body in &bodies {
        let parsed = sipsim_core::ingest::parse_batch(body)
            .map_err(|e| anyhow::anyhow!("the generated batch was refused: {e:?}"))?;
        batches.push(parsed);
    }
    let parse = t.elapsed();

    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    // As the server's group commit runs: as many writers as the store wants, each storing the
    // batches waiting for it (four busy connections: all four on SQLite's one writer, one each
    // on PostgreSQL's four).
    let writers = store.ingest_writers().max(1);
    let per_call = CONNECTIONS.div_ceil(writers);
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (store, batches, next) = (store.clone(), batches.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let start = next.fetch_add(per_call, Ordering::Relaxed);
                if start >= batches.len() {
                    return anyhow::Ok(());
                }
                let end = (start + per_call).min(batches.len());
                let groups: Vec<&[NewMessage]> =
                    batches[start..end].iter().map(Vec::as_slice).collect();
                for group in store.ingest_groups(&groups, now).await? {
                    group?;
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let write = t.elapsed();
    drop(store);
    db.remove().await;
    let per_event = |d: std::time::Duration| d.as_secs_f64() * 1e6 / events as f64;
    Ok(Cost { parse_us: per_event(parse), store_us: per_event(write), bytes })
}

/// Call events against SMS, parsed and written alone, `ctx.runs` times each, interleaved.
pub async fn store_ingest(ctx: &Ctx, backend: Backend) -> anyhow::Result<Section> {
    let events = if ctx.quick { 2_000 } else { 100_000 };
    let mut runs = Vec::new();
    let (mut calls, mut sms) = (Vec::new(), Vec::new());
    for r in 0..ctx.runs {
        let seed = r as u64 + 1;
        let c = run(backend, Mix::Calls, events, seed).await?;
        let s = run(backend, Mix::Sms, events, seed).await?;
        runs.push(json!({
            "calls_parse_us_per_event": c.parse_us, "calls_store_us_per_event": c.store_us,
            "sms_parse_us_per_event": s.parse_us, "sms_store_us_per_event": s.store_us,
            "calls_bytes_per_event": c.bytes, "sms_bytes_per_event": s.bytes,
        }));
        calls.push(c);
        sms.push(s);
    }
    let b = backend.name();
    let m = |v: &[Cost], f: fn(&Cost) -> f64| median(v.iter().map(f).collect());
    let (cp, cs) = (m(&calls, |x| x.parse_us), m(&calls, |x| x.store_us));
    let (sp, ss) = (m(&sms, |x| x.parse_us), m(&sms, |x| x.store_us));
    // The median of each run's ratio: a run's two mixes share that moment's machine.
    let ratio =
        |f: fn(&Cost) -> f64| median(calls.iter().zip(&sms).map(|(c, s)| f(c) / f(s)).collect());
    let checks = vec![
        Check::info(
            format!("ingest {b} without HTTP: store, call events ÷ sms"),
            ratio(|x| x.store_us),
            "×",
            format!(
                "{cs:.1} vs {ss:.1} µs per event; {events} events over 20 accounts, \
                 batches of 1,000 from {CONNECTIONS} at once"
            ),
        ),
        Check::info(
            format!("ingest {b} without HTTP: parse and validate, call events ÷ sms"),
            ratio(|x| x.parse_us),
            "×",
            format!(
                "{cp:.2} vs {sp:.2} µs per event, one thread; {:.0} vs {:.0} bytes per event",
                m(&calls, |x| x.bytes),
                m(&sms, |x| x.bytes)
            ),
        ),
    ];
    Ok(Section { checks, json: json!({ "backend": b, "events": events, "runs": runs }) })
}
