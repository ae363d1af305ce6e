//! What operators watch, recorded: the process's metrics recorder, the queue's figures and each
//! answered request's counters (the routes that serve them are [`crate::observe_http`]).
//!
//! Metrics are recorded through the `metrics` facade (the dispatcher records its own) into one
//! Prometheus recorder per process. Queue gauges are read from the database at scrape time, so every
//! node reports the shared queue — at most once per [`QUEUE_FIGURES_EVERY`] per node, however often
//! (or however many at once) scrapers ask: those queries scan `deliveries`, and `/metrics` may be
//! open to anyone. Labels never name an account: routes are their templates.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sipsim_core::clock::now_ms;
use sipsim_core::store::QueueStats;
use tokio::sync::Mutex;

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
        QueueFigures { every, last: Mutex::new(None) }
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
const LATENCY_BUCKETS: [f64; 13] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0];

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

/// Counts one answered request, labelled with the route template it matched (so that ids do not
/// multiply series), or `other` when it matched none.
pub fn record_request(route: Option<&str>, method: &str, status: u16, elapsed: Duration) {
    let route = route.unwrap_or("other").to_owned();
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
    metrics::counter!("sipsim_http_requests_total", "route" => route.clone(), "method" => method, "status" => status.clone())
        .increment(1);
    metrics::histogram!("sipsim_http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipsim_core::queue::NewMessage;

    #[tokio::test]
    async fn queue_figures_are_read_once_per_period_however_many_ask() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let sqlite = sipsim_store::SqliteStore::open(&url).await.unwrap();
        sqlite.migrate().await.unwrap();
        let store: std::sync::Arc<dyn sipsim_core::Store> = std::sync::Arc::new(sqlite);
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
}
