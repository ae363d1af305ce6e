//! What the delivery tests share: a migrated SQLite store, an account with an integration, and a
//! batch of queued events. Each test file uses some of them.
#![allow(dead_code)]

use std::sync::Arc;

use sipsim_core::queue::NewMessage;
use sipsim_core::secret::SigningSecret;
use sipsim_core::store::IntegrationUpdate;
use sipsim_core::target::{TargetPolicy, WebhookUrl};
use sipsim_core::{AccountId, Event, EventSet, Store};

/// A migrated SQLite store in a new temporary directory (kept while the `TempDir` lives).
pub async fn sqlite_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sipsim.db").display());
    let store = sipsim_store::SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    (Arc::new(store), dir)
}

/// A new account named `name` whose integration sends every event to `url` (local targets allowed).
pub async fn integration(store: &Arc<dyn Store>, name: &str, url: &str) -> AccountId {
    let account = store.create_account(name).await.unwrap().id;
    store
        .put_integration(
            &account,
            IntegrationUpdate {
                webhook_url: WebhookUrl::parse(url, TargetPolicy::AllowInsecure).unwrap(),
                disabled: false,
                events: Some(EventSet::ALL),
                new_signing_secret: SigningSecret::generate(),
            },
        )
        .await
        .unwrap();
    account
}

/// Queues `n` SMS events for `account`, due now.
pub async fn enqueue(store: &Arc<dyn Store>, account: &AccountId, n: usize) {
    let batch: Vec<NewMessage> = (0..n)
        .map(|_| NewMessage {
            account_id: account.clone(),
            event: Event::Sms,
            body: b"{}".to_vec(),
            ordering_key: None,
            idempotency_key: None,
        })
        .collect();
    store.ingest(&batch, sipsim_core::clock::now_ms()).await.unwrap();
}
