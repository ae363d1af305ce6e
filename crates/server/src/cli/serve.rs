//! `sipsimd serve`: assemble a node (API, dispatcher or both) and run it until a signal.

use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use sipsim_core::retry::RetrySchedule;
use sipsim_delivery::{Dispatcher, DispatcherConfig, Sender, SenderConfig};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Output, Role, ServeArgs};
use crate::config::{RateLimits, ServerConfig};
use crate::state::{AppState, open_store};

pub(super) async fn serve(database_url: String, args: ServeArgs) -> anyhow::Result<Output> {
    let mut config = ServerConfig::from_env(database_url)?;
    config.limits = RateLimits::new(args.api_rate_limit, args.token_rate_limit);
    let schedule = RetrySchedule::parse(&args.retry_schedule, args.retry_jitter)
        .map_err(|e| anyhow::anyhow!("--retry-schedule: {e}"))?;
    let _lock = crate::config::lock_database(&config.database_url)?;
    let store = open_store(&config.database_url, config.encryption.clone()).await?;
    if let Some(cipher) = &config.encryption {
        // Secrets written before the key was configured are encrypted now, all in one transaction.
        let encrypted = crate::secrets::encrypt_plaintext(&*store, cipher).await?;
        if encrypted > 0 {
            tracing::info!(
                secrets = encrypted,
                "encrypted the secrets that were stored in clear (copies of the database made before now still hold them in clear)"
            );
        }
    }
    crate::state::sync_clock(&*store).await;
    if store.single_node() {
        // One server per SQLite file (the lock above), so every lease left is a previous run's. On a
        // shared database, other nodes' leases are alive: those expire and are swept instead.
        let reclaimed = store
            .reclaim_all_leases(sipsim_core::clock::now_ms())
            .await?;
        if reclaimed > 0 {
            tracing::warn!(
                reclaimed,
                "a previous run stopped mid-delivery; those deliveries are due again"
            );
        }
    }
    let wake = Arc::new(Notify::new());
    let dispatcher = match args.role {
        Role::Api => None,
        Role::Worker | Role::All => {
            let sender = Sender::new(SenderConfig {
                timeout: args.delivery_timeout,
                policy: config.target_policy,
                dns_overrides: config.dns_overrides.clone(),
                extra_ca_pem: config.extra_ca_pem.clone(),
            })?;
            let dispatcher_config = DispatcherConfig {
                concurrency: args.delivery_concurrency.max(1),
                schedule,
                timeout: args.delivery_timeout,
                pause_after: args.pause_after,
                retention: args.retention,
                per_integration: args.delivery_concurrency_per_integration.max(1),
                ..DispatcherConfig::default()
            };
            Some(Dispatcher::new(store.clone(), sender, dispatcher_config).with_waker(wake.clone()))
        }
    };
    let state = AppState::new(store, &config, wake).await?;
    let listener = match args.role {
        Role::Worker => None,
        Role::Api | Role::All => Some(
            TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?,
        ),
    };
    match &listener {
        Some(l) => tracing::info!(
            listen = %l.local_addr()?, role = ?args.role,
            database = %redact_url(&config.database_url), "sipsimd serving"
        ),
        None => tracing::info!(role = ?args.role, "sipsimd delivering (no HTTP listener)"),
    }
    if listener.is_some() && config.ingest_key.is_none() {
        tracing::warn!("SIPSIM_INGEST_KEY is not set: POST /internal/v1/events is off (404)");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    crate::run(state, listener, dispatcher, shutdown).await?;
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
