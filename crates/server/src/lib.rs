//! `sipsim-server`: the `sipsimd` binary's library. It serves `/oauth/token` and `/api/v2`, and runs
//! the operator commands. It is the only crate that knows axum, and the one place that picks a
//! storage backend ([`state::open_store`]).

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod ingest;
pub mod ingest_writer;
pub mod limits;
pub mod oauth;
pub mod observe;
pub mod request;
pub mod simulate;
pub mod state;
pub mod test_event;

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
    }
    let background = state.spawn_background(shutdown.clone());
    let delivering = dispatcher.map(|d| tokio::spawn(d.run(shutdown.clone())));
    let served = match listener {
        Some(listener) => {
            // With each connection's address, for the dashboard's per-address login limit.
            let app = app::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await
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
