//! A node, built in one place: [`Node::build`] is the only code that opens a database (and so picks
//! a backend) and wires the sender, the dispatcher and the request state. `sipsimd serve`, the
//! demo and the in-process tests build their nodes with it; the process-level tests (kill -9, two
//! nodes) and the benchmark spawn the real binary, which does the same.

use std::sync::Arc;

use anyhow::{Context, bail};
use sipsim_core::Store;
use sipsim_core::clock::now_ms;
use sipsim_delivery::{Dispatcher, Sender, SenderConfig};
use sipsim_store::{PgStore, SqliteStore};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DatabaseLock, Role, lock_database};
use crate::notify::Notifier;
use crate::state::AppState;

/// Opens the database of `config` (`sqlite:…` or `postgres:…`) and applies its migrations; signing
/// secrets are sealed with its encryption key.
///
/// Refuses a database whose encrypted secrets the key cannot open (or that has such secrets and no
/// key): a process that cannot read the signing secrets must not run
/// ([`crate::secrets::check_database_key`]).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = open_store_unchecked(config).await?;
    crate::secrets::check_database_key(&*store, config.encryption.as_ref()).await?;
    Ok(store)
}

/// [`open_store`] without the key check: for commands that never read a secret (backups).
pub async fn open_store_unchecked(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = &config.database_url;
    let cipher = config.encryption.clone();
    if url.starts_with("sqlite:") {
        let store = SqliteStore::open_capped(url, config.sqlite_max_bytes)
            .await
            .with_context(|| format!("cannot open the SQLite database {url}"))?
            .with_cipher(cipher);
        store.migrate().await.context("cannot apply migrations")?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        // The URL may hold a password: the error says which server, never the URL itself.
        let store = PgStore::open(url, config.database_max_connections)
            .await
            .context("cannot connect to the PostgreSQL database")?
            .with_cipher(cipher);
        store.migrate().await.context("cannot apply migrations")?;
        Ok(Arc::new(store))
    } else {
        bail!("unsupported database URL (expected sqlite://PATH or postgres://…)")
    }
}

/// A node ready to run: its database, its request state, and its dispatcher when its role
/// delivers.
pub struct Node {
    /// The database.
    pub store: Arc<dyn Store>,
    /// What the request handlers share.
    pub state: AppState,
    /// The dispatcher, when the node delivers.
    dispatcher: Option<Dispatcher>,
    /// The failure emails' sender, when the node delivers and an SMTP server is configured.
    notifier: Option<Notifier>,
    /// SQLite's one-server-per-file lock, held while the node lives.
    _lock: DatabaseLock,
}

impl Node {
    /// Builds the node `config` describes: takes SQLite's lock (one server per file), opens and
    /// migrates the database and checks its key, encrypts secrets stored in clear when a key is
    /// set, follows the database's clock, makes a previous run's leases due again (SQLite), and
    /// wires one sender for deliveries and *Send Test*, the dispatcher and the failure emails'
    /// notifier (unless the role is `api`) and the request state.
    pub async fn build(config: &Config) -> anyhow::Result<Node> {
        let lock = lock_database(&config.database_url)?;
        let store = open_store(config).await?;
        if let Some(cipher) = &config.encryption {
            // Secrets written before the key was configured are encrypted now, in one transaction.
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
            // One server per SQLite file (the lock above), so every lease left is a previous run's.
            // On a shared database, other nodes' leases are alive: those expire and are swept.
            let reclaimed = store.reclaim_all_leases(now_ms()).await?;
            if reclaimed > 0 {
                tracing::warn!(
                    reclaimed,
                    "a previous run stopped mid-delivery; those deliveries are due again"
                );
            }
        }
        let sender = Sender::new(SenderConfig {
            timeout: config.delivery.timeout,
            policy: config.delivery_target_policy(),
            dns_overrides: config.dns_overrides.clone(),
            extra_ca_pem: config.extra_ca_pem.clone(),
        })?;
        let wake = Arc::new(Notify::new());
        let dispatcher = (config.role != Role::Api).then(|| {
            Dispatcher::new(store.clone(), sender.clone(), config.delivery.clone())
                .with_waker(wake.clone())
        });
        let notifier = match config.role {
            Role::Api => None,
            Role::Worker | Role::All => Notifier::new(store.clone(), &config.notices)?,
        };
        let state = AppState::new(store.clone(), config, wake, sender).await?;
        Ok(Node { store, state, dispatcher, notifier, _lock: lock })
    }

    /// Runs the node until `shutdown` is cancelled: the API on `listener`, when given, the
    /// dispatcher and the notifier, when it has them; then finishes what is in flight.
    pub async fn run(
        self,
        listener: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let notifying = self.notifier.map(|n| tokio::spawn(n.run(shutdown.clone())));
        // `crate::run` returns after cancelling `shutdown`, which ends the notifier too.
        let served = crate::run(self.state, listener, self.dispatcher, shutdown).await;
        if let Some(n) = notifying {
            let _ = n.await;
        }
        served
    }
}
