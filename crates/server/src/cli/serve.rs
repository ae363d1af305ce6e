//! `sipsimd serve`: build a node (API, dispatcher or both, as its role says) and run it until a
//! signal.

use anyhow::Context;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Output;
use crate::config::{Config, Role};
use crate::node::Node;

pub(super) async fn serve(config: &Config) -> anyhow::Result<Output> {
    let node = Node::build(config).await?;
    let listener = match config.role {
        Role::Worker => None,
        Role::Api | Role::All => Some(
            TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?,
        ),
    };
    match &listener {
        Some(l) => tracing::info!(
            listen = %l.local_addr()?, role = ?config.role,
            database = %redact_url(&config.database_url), "sipsimd serving"
        ),
        None => tracing::info!(role = ?config.role, "sipsimd delivering (no HTTP listener)"),
    }
    if listener.is_some() && config.ingest_key.is_none() {
        tracing::warn!("SIPSIM_INGEST_KEY is not set: POST /internal/v1/events is off (404)");
    }
    if config.role != Role::Api {
        crate::notify::say_whether_on(&config.notices);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    node.run(listener, shutdown).await?;
    tracing::info!("sipsimd stopped");
    Ok(Output::ok(json!({ "stopped": true }), String::new()))
}

pub(super) async fn demo(listen: std::net::SocketAddr) -> anyhow::Result<Output> {
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    crate::demo::run(listen, shutdown).await?;
    Ok(Output::ok(json!({ "stopped": true }), String::new()))
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
    shutdown.cancel();
}

/// A database URL without its password, for logs.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
