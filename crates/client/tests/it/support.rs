//! A live server for the tests: the real `sipsimd` app and dispatcher on a temporary SQLite file.

use std::sync::Arc;

use serde_json::{Value, json};
use sipsim_core::queue::DeliveryFilter;
use sipsim_core::retry::RetrySchedule;
use sipsim_core::secret::SigningSecret;
use sipsim_core::store::IntegrationUpdate;
use sipsim_core::target::{TargetPolicy, WebhookUrl};
use sipsim_core::{AccountId, EventSet, ScopeSet, Store};
use sipsim_server::config::{Config, SecretString};
use sipsim_testkit::node::Spawned;

/// A live server: the API and the dispatcher, one delivery attempt per message.
pub struct Live {
    pub url: String,
    pub store: Arc<dyn Store>,
    /// The node; it stops when this is dropped.
    _node: Spawned,
    _dir: tempfile::TempDir,
}

impl Live {
    pub async fn start() -> Live {
        let dir = tempfile::tempdir().unwrap();
        let database_url = format!("sqlite://{}", dir.path().join("sipsim.db").display());
        let mut config = Config::for_database(&database_url);
        config.jwt_secret =
            Some(SecretString::new("client-test-jwt-secret-of-32-bytes-or-more".into()));
        config.target_policy = TargetPolicy::AllowInsecure;
        config.delivery.schedule = RetrySchedule::parse("0s", 0.0).unwrap();
        let node = sipsim_testkit::node::spawn(&config).await;
        Live { url: node.url(""), store: node.store.clone(), _node: node, _dir: dir }
    }

    /// An account and an API client with `scopes`: its credentials.
    pub async fn customer(&self, scopes: &str) -> (AccountId, Credentials) {
        let account = self.store.create_account("Acme").await.unwrap().id;
        let credentials = self.credentials(&account, scopes).await;
        (account, credentials)
    }

    pub async fn credentials(&self, account: &AccountId, scopes: &str) -> Credentials {
        let scopes = ScopeSet::parse_list(scopes).unwrap();
        let (client, secret) =
            sipsim_store::testing::api_client(&*self.store, account, scopes).await;
        Credentials {
            api_url: self.url.clone(),
            id: client.id.to_string(),
            secret: secret.expose().to_owned(),
        }
    }

    /// Sets the integration as the dashboard does; returns its signing secret.
    pub async fn integration(&self, account: &AccountId, url: &str, events: &[&str]) -> String {
        let (integration, _) = self
            .store
            .put_integration(
                account,
                IntegrationUpdate {
                    webhook_url: WebhookUrl::parse(url, TargetPolicy::AllowInsecure).unwrap(),
                    disabled: false,
                    events: Some(EventSet::parse_list(&events.join(",")).unwrap()),
                    new_signing_secret: SigningSecret::generate(),
                },
            )
            .await
            .unwrap();
        integration.signing_secret.expose().to_owned()
    }

    /// Ingests events as the telephony core does.
    pub async fn ingest(&self, account: &AccountId, events: &[(&str, Value)]) {
        let messages: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, (event, payload))| {
                let item = json!({ "account_id": account, "event": event, "payload": payload });
                sipsim_server::ingest::parse_item(i, &item).unwrap()
            })
            .collect();
        self.store.ingest(&messages, sipsim_core::clock::now_ms()).await.unwrap();
    }

    pub async fn deliveries(&self, account: &AccountId) -> Vec<sipsim_core::queue::DeliveryRecord> {
        self.store.list_deliveries(account, &DeliveryFilter::default(), None, 1000).await.unwrap()
    }
}

pub struct Credentials {
    pub api_url: String,
    pub id: String,
    pub secret: String,
}
