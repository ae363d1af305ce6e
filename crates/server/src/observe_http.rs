//! What operators watch, served: `/metrics` (Prometheus), `/healthz` (the process answers) and
//! `/readyz` (the database answers and, where this node delivers, the dispatcher is going round).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sipsim_core::clock::now_ms;

use crate::observe::recorder;
use crate::state::AppState;

/// A dispatcher whose loop has not gone round for this long is not ready.
const DISPATCHER_STALL: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /metrics`: the Prometheus text format. When `SIPSIM_METRICS_TOKEN` is set, only with
/// `Authorization: Bearer <it>`.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !expected.matches(given) {
            return crate::error::error_response(
                StatusCode::UNAUTHORIZED,
                "Missing or invalid metrics token.",
            );
        }
    }
    let Some(handle) = recorder() else {
        return crate::error::error_response(
            StatusCode::NOT_FOUND,
            "Metrics are recorded by the embedding application's own recorder.",
        );
    };
    let now = now_ms();
    match state.queue_figures.get(&*state.store).await {
        Some(q) => {
            metrics::gauge!("sipsim_queue_pending").set(q.pending as f64);
            metrics::gauge!("sipsim_queue_due").set(q.due as f64);
            let age = q.oldest_due_ms.map_or(0, |at| (now - at).max(0));
            metrics::gauge!("sipsim_queue_oldest_due_age_seconds").set(age as f64 / 1000.0);
            metrics::gauge!("sipsim_deliveries_in_flight").set(q.in_flight as f64);
            metrics::gauge!("sipsim_integrations_paused").set(q.paused_integrations as f64);
            metrics::gauge!("sipsim_queue_stats_up").set(1.0);
        }
        None => metrics::gauge!("sipsim_queue_stats_up").set(0.0),
    }
    handle.run_upkeep();
    let mut text = handle.render();
    if let Some(limits) = state.concurrency.get() {
        // Per-integration series name accounts: only behind the metrics token.
        text.push_str(&concurrency_lines(limits, state.metrics_token.is_some()));
    }
    let mut r = text.into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// The adaptive per-integration limits in the Prometheus text format: the cap, how many
/// integrations are below it and, `per_integration`, each of those with its limit, labelled with its
/// account. An integration not listed is at the cap, so a scrape costs a line per integration in
/// trouble, not one per integration. The per-integration lines name accounts, so they are rendered
/// only when `/metrics` asks for a token (an open `/metrics` tells outsiders traffic volumes only).
fn concurrency_lines(limits: &sipsim_delivery::ConcurrencyLimits, per_integration: bool) -> String {
    use std::fmt::Write as _;
    let mut lowered = limits.lowered();
    lowered.sort();
    let mut out = format!(
        "# HELP sipsim_integration_concurrency_cap Attempts one integration may have in flight on \
         this node while its endpoint answers well.\n\
         # TYPE sipsim_integration_concurrency_cap gauge\n\
         sipsim_integration_concurrency_cap {}\n\
         # HELP sipsim_integrations_concurrency_lowered Integrations whose endpoint timed out, erred \
         or slowed down, and which may have fewer attempts in flight than the cap for now.\n\
         # TYPE sipsim_integrations_concurrency_lowered gauge\n\
         sipsim_integrations_concurrency_lowered {}\n\
",
        limits.cap(),
        lowered.len()
    );
    if !per_integration {
        return out;
    }
    out.push_str(
        "# HELP sipsim_integration_concurrency_limit Attempts the integration of this account may \
         have in flight on this node now (only those below the cap are listed).\n\
         # TYPE sipsim_integration_concurrency_limit gauge\n",
    );
    for (account, limit) in lowered {
        // Account ids are `acc_` and base-32 letters: nothing to escape in a label value.
        let _ = writeln!(
            out,
            "sipsim_integration_concurrency_limit{{account_id=\"{account}\"}} {limit}"
        );
    }
    out
}

/// `ok`, or — while writes have been failing for want of space and a probe write still does —
/// `storage full: …`. The probe runs only while the alarm is raised, so a healthy node never
/// writes for its readiness checks; it is what lowers the alarm once space is back, even when no
/// traffic reaches a node taken out of its load balancer.
async fn storage_check(state: &AppState) -> String {
    let Some(why) = state.storage_alarm.raised() else {
        return "ok".to_owned();
    };
    match tokio::time::timeout(DATABASE_TIMEOUT, state.store.write_probe()).await {
        Ok(Ok(())) => {
            state.storage_alarm.lower();
            tracing::info!("the database can be written again");
            "ok".to_owned()
        }
        Ok(Err(sipsim_core::StoreError::StorageFull(now))) => format!("storage full: {now}"),
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::error_chain(&e), "readiness: write probe failed");
            format!("storage full: {why}")
        }
        Err(_) => "timed out".to_owned(),
    }
}

/// `GET /healthz`: the process is up and answering.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: ready to take traffic — the database answers within 2 s (and can be written, after
/// writes failed for want of space) and, if this node runs a
/// dispatcher, its loop went round within 30 s and it has not stopped claiming (a signing secret it
/// cannot decrypt). `503` otherwise, naming what is wrong.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = match tokio::time::timeout(DATABASE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => storage_check(&state).await,
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::error::error_chain(&e), "readiness: database unreachable");
            "unreachable".to_owned()
        }
        Err(_) => "timed out".to_owned(),
    };
    let dispatcher = match state.heartbeat.get() {
        None => "not run by this node".to_owned(),
        Some(h) => match (h.halted(), h.age()) {
            (Some(why), _) => format!("stopped: {why}"),
            (None, None) => "starting".to_owned(),
            (None, Some(age)) if age <= DISPATCHER_STALL => "ok".to_owned(),
            (None, Some(age)) => format!("stalled for {} s", age.as_secs()),
        },
    };
    let ready = database == "ok"
        && !dispatcher.starts_with("stalled")
        && !dispatcher.starts_with("stopped");
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": { "database": database, "dispatcher": dispatcher },
    });
    (status, Json(body)).into_response()
}
