//! What operators watch: `/metrics` (Prometheus), `/healthz` (the process answers) and `/readyz`
//! (the database answers and, where this node delivers, the dispatcher is going round).
//!
//! Metrics are recorded through the `metrics` facade (the dispatcher records its own) into one
//! Prometheus recorder per process. Queue gauges are read from the database at scrape time, so every
//! node reports the shared queue — at most once per [`QUEUE_FIGURES_EVERY`] per node, however often
//! (or however many at once) scrapers ask: those queries scan `deliveries`, and `/metrics` may be
//! open to anyone. Labels never name an account: routes are their templates.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use sipsim_core::clock::now_ms;
use sipsim_core::store::QueueStats;
use tokio::sync::Mutex;

use crate::state::AppState;

/// A dispatcher whose loop has not gone round for this long is not ready.
const DISPATCHER_STALL: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The queue's figures are read from the database at most this often per node.
pub const QUEUE_FIGURES_EVERY: Duration = Duration::from_secs(5);

/// The queue's figures as last read, shared by every scrape within its period
/// ([`QUEUE_FIGURES_EVERY`] in a server).
pub struct QueueFigures {
    every: Duration,
    last: Mutex<Option<(std::time::Instant, Option<QueueStats>)>>,
}

impl Default for QueueFigures {
    fn default() -> Self {
        QueueFigures::every(QUEUE_FIGURES_EVERY)
    }
}

impl QueueFigures {
    /// Figures read at most once per `every`.
    pub fn every(every: Duration) -> Self {
        QueueFigures {
            every,
            last: Mutex::new(None),
        }
    }

    /// The figures, read now only if the last reading is older than the period; `None` when that
    /// reading failed (a failure is kept for the period too, so a struggling database is not asked
    /// more often). Concurrent scrapes wait for one reading instead of each making their own: the
    /// lock is taken before the database is asked.
    pub async fn get(&self, store: &dyn sipsim_core::Store) -> Option<QueueStats> {
        let mut last = self.last.lock().await;
        if let Some((at, figures)) = &*last
            && at.elapsed() < self.every
        {
            return *figures;
        }
        let figures = match store.queue_stats(now_ms()).await {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "reading queue stats failed");
                None
            }
        };
        *last = Some((std::time::Instant::now(), figures));
        figures
    }
}

/// Bucket bounds (seconds) of the latency histograms.
const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
];

/// The process's Prometheus recorder, installed on first use; `None` if another recorder was
/// installed first (an embedding application's), whose own exporter then has our metrics.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .as_ref()
}

/// The label of a request path: its route template, so that ids do not multiply series.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/oauth/token" => "/oauth/token",
        "/api/v2/webhooks" => "/api/v2/webhooks",
        "/api/v2/webhooks/available" => "/api/v2/webhooks/available",
        "/api/v2/webhook-deliveries" => "/api/v2/webhook-deliveries",
        "/api/v2/openapi.json" => "/api/v2/openapi.json",
        "/internal/v1/events" => "/internal/v1/events",
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        p if p.starts_with("/api/v2/webhooks/") && !p[17..].contains('/') => {
            "/api/v2/webhooks/{event}"
        }
        p if p.starts_with("/api/v2/webhook-deliveries/") && p.ends_with("/resend") => {
            "/api/v2/webhook-deliveries/{id}/resend"
        }
        p if p == "/dashboard" || p.starts_with("/dashboard/") => "/dashboard",
        _ => "other",
    }
}

/// Counts one answered request.
pub fn record_request(path: &str, method: &str, status: u16, elapsed: Duration) {
    let route = route_label(path);
    let method = match method {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        _ => "other",
    };
    let status = status.to_string();
    metrics::counter!("sipsim_http_requests_total", "route" => route, "method" => method, "status" => status.clone())
        .increment(1);
    metrics::histogram!("sipsim_http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(elapsed.as_secs_f64());
}

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
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
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
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": { "database": database, "dispatcher": dispatcher },
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipsim_core::queue::NewMessage;

    #[tokio::test]
    async fn queue_figures_are_read_once_per_period_however_many_ask() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let store = crate::state::open_store(&url, None).await.unwrap();
        let account = store.create_account("Acme").await.unwrap().id;
        store
            .put_integration(
                &account,
                sipsim_core::store::IntegrationUpdate {
                    webhook_url: sipsim_core::target::WebhookUrl::parse(
                        "https://hooks.example.com/sipsim",
                        sipsim_core::target::TargetPolicy::PublicHttpsOnly,
                    )
                    .unwrap(),
                    disabled: false,
                    events: Some(sipsim_core::EventSet::ALL),
                    new_signing_secret: sipsim_core::secret::SigningSecret::generate(),
                },
            )
            .await
            .unwrap();
        // No dispatcher runs here: what is ingested stays pending.
        let figures = std::sync::Arc::new(QueueFigures::every(Duration::from_millis(400)));
        let started = std::time::Instant::now();
        assert_eq!(figures.get(&*store).await.unwrap().pending, 0);
        let sms = sipsim_core::payload::example_json(sipsim_core::Event::Sms);
        let messages: Vec<NewMessage> = (0..3)
            .map(|_| NewMessage {
                account_id: account.clone(),
                event: sipsim_core::Event::Sms,
                body: sms.as_bytes().to_vec(),
                ordering_key: None,
                idempotency_key: None,
            })
            .collect();
        store.ingest(&messages, now_ms()).await.unwrap();
        // Within the period, every scrape — one after another or many at once — gets the reading
        // made before the ingest: the database was not asked again.
        let scrapes: Vec<_> = (0..50)
            .map(|_| {
                let (figures, store) = (figures.clone(), store.clone());
                tokio::spawn(async move { figures.get(&*store).await })
            })
            .collect();
        let mut many = Vec::new();
        for scrape in scrapes {
            many.push(scrape.await.unwrap());
        }
        assert!(started.elapsed() < Duration::from_millis(400));
        assert!(many.iter().all(|f| f.unwrap().pending == 0), "{many:?}");
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(figures.get(&*store).await.unwrap().pending, 3);
    }

    #[test]
    fn routes_are_labelled_by_template() {
        assert_eq!(
            route_label("/api/v2/webhooks/sms"),
            "/api/v2/webhooks/{event}"
        );
        assert_eq!(
            route_label("/api/v2/webhooks/available"),
            "/api/v2/webhooks/available"
        );
        assert_eq!(
            route_label("/api/v2/webhook-deliveries/dlv_1/resend"),
            "/api/v2/webhook-deliveries/{id}/resend"
        );
        assert_eq!(route_label("/api/v2/webhooks/a/b"), "other");
        assert_eq!(route_label("/dashboard/deliveries"), "/dashboard");
        assert_eq!(route_label("/wp-admin.php"), "other");
    }
}
