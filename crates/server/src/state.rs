//! What the request handlers share, and the node's background tasks (revocations, signals from
//! other nodes, the database's clock).

use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sipsim_core::cipher::{JWT_KEY_SETTING, seal, unseal};
use sipsim_core::secret::SecretHash;
use sipsim_core::store::{Alarm, Signal};
use sipsim_core::target::TargetPolicy;
use sipsim_core::{ClientId, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use sipsim_delivery::{Heartbeat, Sender};

use crate::auth::revocations::{REFRESH_EVERY, Revocations};
use crate::client_addr::{KnowsProxies, TrustedProxies};
use crate::config::Config;
use crate::dashboard::auth::PasswordChecks;
use crate::ingest_writer::IngestWriter;
use crate::integrations::IntegrationCache;
use crate::limits::Limiter;
use crate::limits::failures::{FailureLimiter, FailurePolicy};
use sipsim_core::jwt::JwtKey;

/// Access tokens live two hours, as SIPSIM documents (`expires_in: 7200`).
pub const TOKEN_TTL_SECS: i64 = 7200;

/// Everything a request handler may need, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
pub struct Inner {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The access-token key.
    pub jwt: JwtKey,
    /// Deleted clients whose tokens are refused.
    pub revocations: Revocations,
    /// Integrations, cached for the API's reads.
    pub integrations: IntegrationCache,
    /// Makes the integration cache check the settings version now (another node changed one).
    refresh_integrations: Arc<Notify>,
    /// Which webhook URLs may be saved.
    pub target_policy: TargetPolicy,
    /// Hash of `SIPSIM_INGEST_KEY`; without one the ingest route is not served.
    pub ingest_key: Option<SecretHash>,
    /// Group-commits ingest requests, then wakes this process's dispatcher.
    pub ingest: IngestWriter,
    /// Wakes this process's dispatcher (after a resend); a no-op when it runs none.
    pub wake: Arc<Notify>,
    /// Makes the revocation list refresh now (another node deleted a client).
    refresh_revocations: Arc<Notify>,
    /// Sends the dashboard's *Send Test* (with the documented 2 s timeout).
    pub sender: Sender,
    /// Failed dashboard logins, per (address, email) and per address.
    pub login_failures: FailureLimiter,
    /// Password checks in progress: bounded, since each holds argon2's memory.
    pub password_checks: PasswordChecks,
    /// `/api/v2` requests per API client.
    pub api_limiter: Option<Limiter<ClientId>>,
    /// Failed `/oauth/token` requests, per (address, `client_id`) and per address.
    pub token_failures: Option<FailureLimiter>,
    /// Tokens issued per API client (counted once it has authenticated).
    pub token_limiter: Option<Limiter<ClientId>>,
    /// Peers whose `X-Forwarded-For` is believed (the client address of the limits).
    pub trusted_proxies: TrustedProxies,
    /// Hash of `SIPSIM_METRICS_TOKEN`: `/metrics` asks for it when set.
    pub metrics_token: Option<SecretHash>,
    /// The heartbeat of this process's dispatcher, when it runs one (`/readyz`).
    pub heartbeat: OnceLock<Heartbeat>,
    /// This process's dispatcher's adaptive per-integration limits, when it runs one (`/metrics`,
    /// the dashboard).
    pub concurrency: OnceLock<sipsim_delivery::ConcurrencyLimits>,
    /// The queue's figures for `/metrics`, read at most every few seconds.
    pub queue_figures: crate::observe::QueueFigures,
    /// Raised while writes fail for want of space (ingest and this node's dispatcher raise it;
    /// `/readyz` lowers it when a probe write goes through).
    pub storage_alarm: Alarm,
    /// When failure emails are configured: after how long failures make one (the dashboard says so).
    pub failure_emails_after: Option<std::time::Duration>,
}

impl AppState {
    /// The services, with this node's cache, dispatcher and revocation list.
    pub fn service(&self) -> crate::service::Service<'_> {
        crate::service::Service::on_node(
            &*self.store,
            crate::service::Local {
                integrations: &self.integrations,
                wake: &self.wake,
                revocations: &self.revocations,
            },
        )
    }
}

impl KnowsProxies for AppState {
    fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds the state over an open store: loads (or creates) the JWT key and the revocation list.
    /// `wake` is the dispatcher's waker when this process delivers; `sender` sends *Send Test*.
    pub async fn new(
        store: Arc<dyn Store>,
        config: &Config,
        wake: Arc<Notify>,
        sender: Sender,
    ) -> anyhow::Result<Self> {
        let key = match &config.jwt_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => {
                let cipher = config.encryption.as_ref();
                let candidate = STANDARD.encode(sipsim_core::random::bytes::<32>());
                let stored = store
                    .setting_or_insert(JWT_KEY_SETTING, &seal(cipher, &candidate, JWT_KEY_SETTING))
                    .await
                    .context("cannot load the JWT key")?;
                let key = unseal(cipher, &stored, JWT_KEY_SETTING)
                    .context("cannot read the stored JWT key")?;
                STANDARD.decode(key).context("the stored JWT key is not base64")?
            }
        };
        // Installed before the first request or attempt, so none goes uncounted.
        crate::observe::recorder();
        let revocations = Revocations::default();
        revocations.refresh(&*store).await.context("cannot load the revoked API clients")?;
        let settings_version =
            store.settings_version().await.context("cannot read the settings version")?;
        Ok(AppState(Arc::new(Inner {
            store: store.clone(),
            jwt: JwtKey::new(&key),
            revocations,
            integrations: IntegrationCache::new(settings_version),
            refresh_integrations: Arc::new(Notify::new()),
            target_policy: config.target_policy,
            ingest_key: config.ingest_key.as_ref().map(|k| SecretHash::of(k.expose())),
            ingest: IngestWriter::spawn(store.clone(), wake.clone()),
            wake,
            refresh_revocations: Arc::new(Notify::new()),
            sender,
            login_failures: FailureLimiter::new(FailurePolicy::LOGIN),
            password_checks: PasswordChecks::default(),
            api_limiter: config.limits.api.map(Limiter::new),
            token_failures: config.limits.token_failures.map(FailureLimiter::new),
            token_limiter: config.limits.token_per_client.map(Limiter::new),
            trusted_proxies: config.trusted_proxies.clone(),
            metrics_token: config.metrics_token.as_ref().map(|k| SecretHash::of(k.expose())),
            heartbeat: OnceLock::new(),
            concurrency: OnceLock::new(),
            queue_figures: Default::default(),
            storage_alarm: Alarm::default(),
            failure_emails_after: config
                .notices
                .mail
                .as_ref()
                .map(|_| config.notices.failing_after),
        })))
    }

    /// Until `shutdown` is cancelled: keeps the revocation list fresh, passes other nodes' signals
    /// on (wake-ups, revocations) and follows the shared database's clock.
    pub fn spawn_background(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let watching = tokio::spawn(watch_signals(state.clone()));
            let clock = tokio::spawn(follow_database_clock(state.store.clone()));
            let settings = tokio::spawn(follow_settings(state.clone()));
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = state.refresh_revocations.notified() => {
                        if let Err(e) = state.revocations.refresh(&*state.store).await {
                            tracing::warn!(error = %crate::error::error_chain(&e), "revocation refresh failed");
                        }
                    }
                    _ = tick.tick() => {
                        if let Err(e) = state.revocations.refresh(&*state.store).await {
                            tracing::warn!(error = %crate::error::error_chain(&e), "revocation refresh failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
            watching.abort();
            clock.abort();
            settings.abort();
        })
    }
}

/// Keeps the integration cache in step with the store's settings version: polled, and at once when
/// another node signals a change.
async fn follow_settings(state: AppState) {
    let mut tick = tokio::time::interval(crate::integrations::POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.refresh_integrations.notified() => {}
            _ = tick.tick() => {}
        }
        if let Err(e) = state.integrations.refresh(&*state.store).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "reading the settings version failed");
        }
    }
}

/// Acts on the signals other nodes send through the database (nothing to do on SQLite).
async fn watch_signals(state: AppState) {
    let on_signal = |signal: Signal| match signal {
        Signal::Due => state.wake.notify_one(),
        Signal::Revoked => state.refresh_revocations.notify_one(),
        Signal::SettingsChanged => state.refresh_integrations.notify_one(),
    };
    loop {
        match state.store.watch(&on_signal).await {
            Ok(()) => return,
            Err(e) => {
                // Meanwhile the fallback poll and the periodic revocation refresh cover the gap.
                tracing::warn!(error = %crate::error::error_chain(&e), "listening for other nodes failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// How often a node re-reads the shared database's clock.
const CLOCK_EVERY: Duration = Duration::from_secs(30);

/// Makes this process's clock follow the database's, where several nodes share one (PostgreSQL), so
/// all of them agree when a lease expires or a retry is due, whatever their own clocks say.
async fn follow_database_clock(store: Arc<dyn Store>) {
    while sync_clock(&*store).await {
        tokio::time::sleep(CLOCK_EVERY).await;
    }
}

/// Sets this process's clock offset from the database's clock once. Returns `false` when the
/// backend has no clock to follow (SQLite).
pub async fn sync_clock(store: &dyn Store) -> bool {
    let before = sipsim_core::clock::system_now_ms();
    match store.database_clock_ms().await {
        Ok(None) => false,
        Ok(Some(database)) => {
            let after = sipsim_core::clock::system_now_ms();
            // The database read its clock somewhere in the round trip: assume the middle.
            let offset = database - (before + after) / 2;
            sipsim_core::clock::set_offset_ms(offset);
            if offset.abs() > 1000 {
                tracing::warn!(
                    offset_ms = offset,
                    "this machine's clock is off from the database's; following the database"
                );
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %crate::error::error_chain(&e), "reading the database clock failed");
            true
        }
    }
}
