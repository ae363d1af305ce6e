//! The store conformance suite: every `Store` operation's promised semantics, written once against the
//! trait and run on each backend (SQLite here; PostgreSQL joins when its backend lands).

use std::sync::Arc;

use sipsim_core::secret::{ClientSecret, SigningSecret};
use sipsim_core::store::{IntegrationState, IntegrationUpdate, NewApiClient, SubscriptionChange};
use sipsim_core::target::{TargetPolicy, WebhookUrl};
use sipsim_core::{AccountId, Event, EventSet, Scope, ScopeSet, Store, StoreError};
use sipsim_store::SqliteStore;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    (Arc::new(store), dir)
}

fn url(s: &str) -> WebhookUrl {
    WebhookUrl::parse(s, TargetPolicy::PublicHttpsOnly).unwrap()
}

fn update(u: &str, disabled: bool, events: Option<EventSet>) -> IntegrationUpdate {
    IntegrationUpdate {
        webhook_url: url(u),
        disabled,
        events,
        new_signing_secret: SigningSecret::generate(),
    }
}

async fn accounts_and_clients(store: &dyn Store) {
    let acc = store.create_account("Acme").await.unwrap();
    assert_eq!(store.get_account(&acc.id).await.unwrap(), Some(acc.clone()));
    assert_eq!(
        store.get_account(&AccountId::generate()).await.unwrap(),
        None
    );

    let secret = ClientSecret::generate();
    let scopes = ScopeSet::empty().with(Scope::WebhooksRead);
    let client = store
        .create_client(NewApiClient {
            account_id: acc.id.clone(),
            name: "crm".into(),
            scopes,
            secret_hash: secret.hash(),
        })
        .await
        .unwrap();
    let read = store.get_client(&client.id).await.unwrap().unwrap();
    assert_eq!(read, client);
    assert!(read.secret_hash.matches(secret.expose()));
    assert_eq!(read.scopes, scopes);

    let missing = store
        .create_client(NewApiClient {
            account_id: AccountId::generate(),
            name: "x".into(),
            scopes,
            secret_hash: secret.hash(),
        })
        .await;
    assert!(matches!(missing, Err(StoreError::AccountNotFound(_))));

    store.record_client_use(&client.id, 1234).await.unwrap();
    let listed = store.list_clients(&acc.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at_ms, Some(1234));

    let before = store.revocations_after(0).await.unwrap();
    assert!(store.delete_client(&client.id).await.unwrap());
    assert!(!store.delete_client(&client.id).await.unwrap());
    assert_eq!(store.get_client(&client.id).await.unwrap(), None);
    let after = store.revocations_after(0).await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    let last = after.last().unwrap();
    assert_eq!(last.client_id, client.id);
    assert!(store.revocations_after(last.seq).await.unwrap().is_empty());
}

async fn integration_lifecycle(store: &dyn Store) {
    let acc = store.create_account("Acme").await.unwrap();
    assert_eq!(store.get_integration(&acc.id).await.unwrap(), None);
    let none = store
        .change_subscription(&acc.id, SubscriptionChange::Subscribe(Event::Sms))
        .await
        .unwrap();
    assert_eq!(none, None);

    let first = update("https://example.com/a", false, None);
    let secret = first.new_signing_secret.clone();
    let (created, was_new) = store.put_integration(&acc.id, first).await.unwrap();
    assert!(was_new);
    assert_eq!(created.state, IntegrationState::Enabled);
    assert!(
        created.events.is_empty(),
        "a new integration subscribes to nothing"
    );
    assert_eq!(created.signing_secret, secret);

    let events: EventSet = [Event::Rating, Event::IncomingCallStart]
        .into_iter()
        .collect();
    let (changed, was_new) = store
        .put_integration(&acc.id, update("https://example.com/b", true, Some(events)))
        .await
        .unwrap();
    assert!(!was_new);
    assert_eq!(changed.webhook_url.as_str(), "https://example.com/b");
    assert_eq!(changed.state, IntegrationState::Disabled);
    assert_eq!(changed.events, events);
    assert_eq!(
        changed.signing_secret, secret,
        "set never rotates the secret"
    );
    assert!(changed.version > created.version);

    // Without events, subscriptions stay; without --disabled, it is enabled again.
    let (again, _) = store
        .put_integration(&acc.id, update("https://example.com/b", false, None))
        .await
        .unwrap();
    assert_eq!(again.events, events);
    assert_eq!(again.state, IntegrationState::Enabled);
    assert_eq!(
        again.setting().subscribed_events,
        ["incoming_call_start", "rating"]
    );
    assert!(again.setting().enabled);

    let sub = store
        .change_subscription(
            &acc.id,
            SubscriptionChange::Subscribe(Event::OutgoingCallEnd),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sub.events.names(),
        ["incoming_call_start", "outgoing_call_end", "rating"]
    );
    let same = store
        .change_subscription(
            &acc.id,
            SubscriptionChange::Subscribe(Event::OutgoingCallEnd),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.events, sub.events);
    assert_eq!(
        same.version, sub.version,
        "a no-op change does not bump the version"
    );
    let unsub = store
        .change_subscription(&acc.id, SubscriptionChange::Unsubscribe(Event::Rating))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        unsub.events.names(),
        ["incoming_call_start", "outgoing_call_end"]
    );
    let unsub2 = store
        .change_subscription(&acc.id, SubscriptionChange::Unsubscribe(Event::Rating))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unsub2.events, unsub.events);

    assert!(store.remove_integration(&acc.id).await.unwrap());
    assert!(!store.remove_integration(&acc.id).await.unwrap());
    assert_eq!(store.get_integration(&acc.id).await.unwrap(), None);

    let missing = store
        .put_integration(
            &AccountId::generate(),
            update("https://example.com/", false, None),
        )
        .await;
    assert!(matches!(missing, Err(StoreError::AccountNotFound(_))));
}

async fn concurrent_subscriptions_all_survive(store: Arc<dyn Store>) {
    let acc = store.create_account("Acme").await.unwrap();
    store
        .put_integration(&acc.id, update("https://example.com/", false, None))
        .await
        .unwrap();
    let tasks: Vec<_> = Event::CATALOG
        .into_iter()
        .map(|e| {
            let store = store.clone();
            let id = acc.id.clone();
            tokio::spawn(async move {
                store
                    .change_subscription(&id, SubscriptionChange::Subscribe(e))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let got = store.get_integration(&acc.id).await.unwrap().unwrap();
    assert_eq!(got.events, EventSet::ALL);
}

async fn settings_keep_the_first_value(store: &dyn Store) {
    assert_eq!(store.setting_or_insert("k", "one").await.unwrap(), "one");
    assert_eq!(store.setting_or_insert("k", "two").await.unwrap(), "one");
}

#[tokio::test]
async fn sqlite_accounts_and_clients() {
    let (store, _dir) = sqlite().await;
    accounts_and_clients(&*store).await;
}

#[tokio::test]
async fn sqlite_integration_lifecycle() {
    let (store, _dir) = sqlite().await;
    integration_lifecycle(&*store).await;
}

#[tokio::test]
async fn sqlite_concurrent_subscriptions_all_survive() {
    let (store, _dir) = sqlite().await;
    concurrent_subscriptions_all_survive(store).await;
}

#[tokio::test]
async fn sqlite_settings_keep_the_first_value() {
    let (store, _dir) = sqlite().await;
    settings_keep_the_first_value(&*store).await;
}
