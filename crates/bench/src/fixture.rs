//! A fresh database with accounts whose integrations point at the receiver.

use std::sync::Arc;

use sipsim_core::secret::SigningSecret;
use sipsim_core::store::IntegrationUpdate;
use sipsim_core::target::{TargetPolicy, WebhookUrl};
use sipsim_core::{AccountId, Event, Store};
use sipsim_store::testing::PgTestDb;
use sipsim_store::{PgStore, SqliteStore};

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A database for one measurement; removed when dropped (SQLite) or by [`Db::remove`].
#[derive(Debug)]
pub struct Db {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgTestDb>,
}

impl Db {
    pub async fn new(backend: Backend) -> anyhow::Result<Db> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                Ok(Db { url, _dir: Some(dir), pg: None })
            }
            Backend::Postgres => {
                let db = sipsim_store::testing::postgres_test_db("bench")
                    .await
                    .ok_or_else(|| anyhow::anyhow!("no PostgreSQL: pass --postgres URL"))?;
                Ok(Db { url: db.url().to_owned(), _dir: None, pg: Some(db) })
            }
        }
    }

    /// Opens the store (migrated) for setting things up directly.
    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        if self.pg.is_some() {
            let store = PgStore::open(&self.url, 8).await?;
            store.migrate().await?;
            Ok(Arc::new(store))
        } else {
            let store = SqliteStore::open(&self.url).await?;
            store.migrate().await?;
            Ok(Arc::new(store))
        }
    }

    pub async fn remove(mut self) {
        if let Some(db) = self.pg.take() {
            db.drop_database().await;
        }
    }
}

/// Creates `urls.len()` accounts, each with an enabled integration subscribed to every event and pointing
/// at its URL. Returns the account ids in order.
pub async fn accounts(store: &dyn Store, urls: &[String]) -> anyhow::Result<Vec<AccountId>> {
    let mut ids = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        let account = store.create_account(&format!("Bench {i}")).await?;
        let update = IntegrationUpdate {
            webhook_url: WebhookUrl::parse(url, TargetPolicy::AllowInsecure)
                .map_err(|e| anyhow::anyhow!("{url}: {e}"))?,
            disabled: false,
            events: Some(sipsim_core::EventSet::ALL),
            new_signing_secret: SigningSecret::generate(),
        };
        store.put_integration(&account.id, update).await?;
        ids.push(account.id);
    }
    Ok(ids)
}

/// A fresh database with `n` accounts whose integrations point at unreachable example URLs, for
/// measuring the store alone.
pub async fn store_with_accounts(
    backend: Backend,
    n: usize,
) -> anyhow::Result<(Db, Arc<dyn Store>, Vec<AccountId>)> {
    let db = Db::new(backend).await?;
    let store = db.store().await?;
    let urls: Vec<String> = (0..n).map(|i| format!("https://example.com/{i}")).collect();
    let ids = accounts(store.as_ref(), &urls).await?;
    Ok((db, store, ids))
}

/// The `sms` example payload, compact.
pub fn sms_payload() -> String {
    let value: serde_json::Value =
        serde_json::from_str(sipsim_core::payload::example_json(Event::Sms)).unwrap_or_default();
    value.to_string()
}
