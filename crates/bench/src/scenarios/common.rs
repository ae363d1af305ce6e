//! What the scenarios share: their context, a section's shape, medians, and a node with its
//! receiver and token.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::fixture::{self, Backend, Db};
use crate::load::{self, Call, Percentiles, Stop};
use crate::node::{self, INGEST_KEY, Served};
use crate::receiver::Receiver;
use crate::report::Check;

/// Everything the scenarios share.
#[derive(Debug)]
pub struct Ctx {
    pub sipsimd: PathBuf,
    pub receiver: Receiver,
    pub quick: bool,
    pub runs: usize,
    /// Events/s of the end-to-end latency runs (default 500; 200 with --quick).
    pub latency_rate: Option<f64>,
}

impl Ctx {
    /// `full` in a full run, `quick` in a smoke run.
    pub(super) fn size<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// What a scenario reports.
#[derive(Debug, Default)]
pub struct Section {
    pub checks: Vec<Check>,
    pub json: Value,
}

pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(super) fn medians(runs: &[Value], key: &str) -> f64 {
    median(runs.iter().filter_map(|r| r[key].as_f64()).collect())
}

pub(super) fn ingest_key() -> Option<Arc<str>> {
    Some(Arc::from(INGEST_KEY))
}

/// Runs one sipsimd on a fresh database whose accounts point at `urls`.
pub(super) async fn node(
    ctx: &Ctx,
    backend: Backend,
    urls: &[String],
) -> anyhow::Result<(Db, Served, Vec<String>)> {
    let db = Db::new(backend).await?;
    let store = db.store().await?;
    let accounts = fixture::accounts(store.as_ref(), urls).await?;
    let accounts = accounts.iter().map(ToString::to_string).collect();
    drop(store);
    let served = node::sipsimd(&ctx.sipsimd, &db.url, &[])?;
    Ok((db, served, accounts))
}

pub(super) fn ok_urls(receiver: &Receiver, n: usize) -> Vec<String> {
    (0..n).map(|i| receiver.ok_url(i)).collect()
}

/// Asks `/oauth/token` for a token with `webhooks.read`.
pub(super) async fn token(
    ctx: &Ctx,
    db: &Db,
    served: &Served,
    account: &str,
) -> anyhow::Result<Arc<str>> {
    let created = node::operator(
        &ctx.sipsimd,
        &db.url,
        &["client", "create", "--account", account, "--scopes", "webhooks.read"],
    )?;
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        created["client_id"].as_str().unwrap_or_default(),
        created["client_secret"].as_str().unwrap_or_default()
    );
    let mut call = Call::post_json("/oauth/token", None, form.into_bytes());
    call.content_type = "application/x-www-form-urlencoded";
    let hits =
        load::closed_loop(served.addr, 1, Stop::Count(1), true, Arc::new(move |_| call.clone()))
            .await?;
    let body = hits.first().and_then(|h| h.body.clone()).unwrap_or_default();
    let answer: Value = serde_json::from_slice(&body)?;
    let token =
        answer["access_token"].as_str().ok_or_else(|| anyhow::anyhow!("no token in {answer}"))?;
    Ok(Arc::from(token))
}

/// Requests/s and latency of a closed loop.
pub(super) fn rate_of(hits: &[load::Hit], expect: u16) -> anyhow::Result<(f64, Percentiles)> {
    let bad = hits.iter().filter(|h| h.status != expect).count();
    anyhow::ensure!(bad == 0, "{bad} of {} requests did not answer {expect}", hits.len());
    let first = hits.iter().map(|h| h.scheduled).min();
    let last = hits.iter().map(|h| h.done).max();
    let secs = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let rate = if secs > 0.0 { hits.len() as f64 / secs } else { 0.0 };
    Ok((rate, Percentiles::of(hits.iter().map(|h| h.latency_us()).collect())))
}
