//! `sipsim-server`: the `sipsimd` binary's library. It serves `/oauth/token` and `/api/v2`, and runs
//! the operator commands. It is the only crate that knows axum, and the one place that picks a
//! storage backend ([`state::open_store`]).

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod oauth;
pub mod request;
pub mod state;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Serves the API on `listener` until `shutdown` is cancelled, then finishes in-flight requests and
/// stops the background tasks.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let background = state.spawn_background(shutdown.clone());
    let served = axum::serve(listener, app::app(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = background.await;
    served
}
