//! The local receiver every delivery goes to: `/ok/…` answers 200 at once and notes when each
//! message arrived (by its `webhook-id`); `/hang` never answers (a receiver that hangs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

#[derive(Debug, Default)]
struct Inner {
    ok: AtomicU64,
    hung: AtomicU64,
    /// Whether arrivals are noted (latency runs only: throughput runs skip the map).
    record: AtomicBool,
    /// First arrival of each message id.
    arrivals: Mutex<HashMap<String, Instant>>,
}

/// A running receiver; clones share it.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let inner = Arc::new(Inner::default());
        let ok = inner.clone();
        let hung = inner.clone();
        let app = Router::new()
            .route(
                "/ok/{n}",
                post(move |headers: HeaderMap| {
                    let inner = ok.clone();
                    async move {
                        let now = Instant::now();
                        inner.ok.fetch_add(1, Ordering::Relaxed);
                        if inner.record.load(Ordering::Relaxed)
                            && let Some(id) =
                                headers.get("webhook-id").and_then(|v| v.to_str().ok())
                            && let Ok(mut arrivals) = inner.arrivals.lock()
                        {
                            arrivals.entry(id.to_owned()).or_insert(now);
                        }
                        StatusCode::OK
                    }
                }),
            )
            .route(
                "/hang",
                post(move || {
                    let inner = hung.clone();
                    async move {
                        inner.hung.fetch_add(1, Ordering::Relaxed);
                        std::future::pending::<StatusCode>().await
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Receiver { addr, inner })
    }

    /// The URL of healthy endpoint `n`.
    pub fn ok_url(&self, n: usize) -> String {
        format!("http://{}/ok/{n}", self.addr)
    }

    pub fn hang_url(&self) -> String {
        format!("http://{}/hang", self.addr)
    }

    /// Requests answered 200 so far.
    pub fn ok_count(&self) -> u64 {
        self.inner.ok.load(Ordering::Relaxed)
    }

    pub fn hung_count(&self) -> u64 {
        self.inner.hung.load(Ordering::Relaxed)
    }

    /// Starts or stops noting arrivals.
    pub fn record(&self, on: bool) {
        self.inner.record.store(on, Ordering::Relaxed);
    }

    /// Takes the arrivals noted so far.
    pub fn take_arrivals(&self) -> HashMap<String, Instant> {
        self.inner.arrivals.lock().map(|mut a| std::mem::take(&mut *a)).unwrap_or_default()
    }

    /// Waits until `count` reaches `target` or `limit` passes; returns when it reached it, if it did.
    pub async fn wait_for(
        &self,
        target: u64,
        limit: std::time::Duration,
        count: impl Fn(&Self) -> u64,
    ) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if count(self) >= target {
                return Some(Instant::now());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_micros(500)).await;
        }
    }
}
