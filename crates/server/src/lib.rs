//! `sipsim-server`: the `sipsimd` binary's library. It serves `/oauth/token`, `/api/v2`, the ingest
//! route and the dashboard, and runs the operator commands. It is the one place that picks a storage
//! backend ([`node::open_store`]), in [`node::Node::build`]. (axum serves here; the client's `cli` feature uses it too, for
//! `sipsim listen`'s local receiver.)

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod ingest;
pub mod ingest_writer;
pub mod integrations;
pub mod limits;
pub mod node;
pub mod notify;
pub mod oauth;
pub mod observe;
pub mod observe_http;
pub mod request;
pub mod secrets;
pub mod service;
pub mod simulate;
pub mod state;
pub mod test_event;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sipsim_delivery::Dispatcher;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Runs a node until `shutdown` is cancelled: the API on `listener` (if any) and `dispatcher` (if
/// any). Then it finishes in-flight requests and attempts, and stops the background tasks.
pub async fn run(
    state: AppState,
    listener: Option<TcpListener>,
    dispatcher: Option<Dispatcher>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Some(d) = &dispatcher {
        let _ = state.heartbeat.set(d.heartbeat());
        let _ = state.concurrency.set(d.limits());
    }
    let background = state.spawn_background(shutdown.clone());
    let delivering = dispatcher.map(|d| {
        let d = d.with_storage_alarm(state.storage_alarm.clone());
        tokio::spawn(d.run(shutdown.clone()))
    });
    let served = match listener {
        Some(listener) => {
            serve_http(listener, app::app(state), shutdown.clone()).await;
            Ok(())
        }
        None => {
            shutdown.cancelled().await;
            Ok(())
        }
    };
    shutdown.cancel();
    if let Some(d) = delivering {
        let _ = d.await;
    }
    let _ = background.await;
    served
}

/// A client must send a request's whole head within this long of starting it (or of the previous
/// response, on a kept-alive connection), or the connection is closed: a slow client cannot hold one
/// open by trickling header lines.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a shutdown waits for requests in progress.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` over HTTP/1.1 until `shutdown`, then lets requests in progress finish
/// (for at most 30 s). Each connection gets its peer address (the per-address limits), a head
/// read timeout and a head size limit, which `axum::serve` does not set.
pub async fn serve_http(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        // The whole router wrapped once per connection (Router::layer would wrap each route).
        let service = tower::Layer::layer(
            &axum::Extension(axum::extract::ConnectInfo::<SocketAddr>(peer)),
            app.clone(),
        );
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("requests still in progress after 30 s of shutdown; leaving them");
        }
    }
}
