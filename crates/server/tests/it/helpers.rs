//! Spawning a server and talking to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sipsim_core::cipher::SecretCipher;
use sipsim_core::retry::RetrySchedule;
use sipsim_core::secret::SigningSecret;
use sipsim_core::store::IntegrationUpdate;
use sipsim_core::target::{TargetPolicy, WebhookUrl};
use sipsim_core::{AccountId, ClientId, Event, EventSet, ScopeSet, Store};
use sipsim_delivery::DispatcherConfig;
use sipsim_server::client_addr::TrustedProxies;
use sipsim_server::config::{Config, RateLimits, SecretString};
use sipsim_server::notify::NoticeConfig;
use sipsim_testkit::node::Spawned;

use crate::process::{argv, succeeded};

/// The JWT key the test servers use, so tests can mint tokens (expired ones, say) themselves.
pub const JWT_SECRET: &str = "test-jwt-secret-that-is-at-least-32-bytes";
/// The ingest key of the test servers.
pub const INGEST_KEY: &str = "test-ingest-key-0123456789";
/// The test servers' retry schedule: short, so retries happen within a test.
pub const RETRY_SCHEDULE: &str = "0s,300ms,300ms";

/// How a test server is set up; the default is a fresh SQLite database, public https targets only,
/// the default rate limits, no trusted proxy and no encryption key.
pub struct Setup {
    pub target_policy: TargetPolicy,
    pub limits: RateLimits,
    /// A database to use instead of a fresh SQLite file (PostgreSQL).
    pub database_url: Option<String>,
    /// As `SIPSIM_TRUSTED_PROXIES`.
    pub trusted_proxies: &'static str,
    /// As `SIPSIM_ENCRYPTION_KEY`.
    pub encryption_key: Option<&'static str>,
    /// As `SIPSIM_METRICS_TOKEN`.
    pub metrics_token: Option<&'static str>,
    /// Failure emails (`SIPSIM_SMTP_URL`, …): off by default.
    pub notices: NoticeConfig,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            target_policy: TargetPolicy::PublicHttpsOnly,
            limits: RateLimits::default(),
            database_url: None,
            trusted_proxies: "",
            encryption_key: None,
            metrics_token: None,
            notices: NoticeConfig::default(),
        }
    }
}

/// What an API call answered: its status, headers and JSON body (`Null` when empty).
pub type Answer = (StatusCode, reqwest::header::HeaderMap, Value);

/// A running server and its database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub database_url: String,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    /// The node; it stops when the app is dropped.
    _node: Spawned,
    _dir: tempfile::TempDir,
}

/// An API client created for a test.
pub struct Client {
    pub id: ClientId,
    pub secret: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(TargetPolicy::PublicHttpsOnly).await
    }

    /// A server whose webhook URLs may be http:// and loopback (as `SIPSIM_ALLOW_INSECURE_TARGETS=1`),
    /// for the dashboard's tests that connect local receivers.
    pub async fn spawn_allowing_local_targets() -> TestApp {
        TestApp::spawn_with(TargetPolicy::AllowInsecure).await
    }

    async fn spawn_with(target_policy: TargetPolicy) -> TestApp {
        TestApp::start(Setup { target_policy, ..Setup::default() }).await
    }

    /// A server with these rate limits.
    pub async fn spawn_with_limits(limits: RateLimits) -> TestApp {
        TestApp::start(Setup { limits, ..Setup::default() }).await
    }

    /// A server behind a proxy on 127.0.0.1 (`SIPSIM_TRUSTED_PROXIES=127.0.0.1`): the tests' requests
    /// name their client address in `X-Forwarded-For`.
    pub async fn spawn_behind_proxy() -> TestApp {
        TestApp::start(Setup { trusted_proxies: "127.0.0.1", ..Setup::default() }).await
    }

    /// A server on the database at `url` (PostgreSQL).
    pub async fn spawn_on(url: &str) -> TestApp {
        TestApp::start(Setup { database_url: Some(url.to_owned()), ..Setup::default() }).await
    }

    /// A server set up as `setup` says.
    pub async fn start(setup: Setup) -> TestApp {
        let Setup {
            target_policy,
            limits,
            database_url,
            trusted_proxies,
            encryption_key,
            metrics_token,
            notices,
        } = setup;
        let encryption = encryption_key.map(|k| SecretCipher::from_base64(k).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("sipsim.db").display()));
        let mut config = Config::for_database(&database_url);
        config.jwt_secret = Some(SecretString::new(JWT_SECRET.to_owned()));
        config.target_policy = target_policy;
        config.encryption = encryption;
        config.ingest_key = Some(SecretString::new(INGEST_KEY.to_owned()));
        config.limits = limits;
        config.metrics_token = metrics_token.map(|t| SecretString::new(t.to_owned()));
        config.trusted_proxies = TrustedProxies::parse(trusted_proxies).unwrap();
        config.notices = notices;
        // The dispatcher may send to loopback receivers: tests run them there.
        config.delivery_policy = Some(TargetPolicy::AllowInsecure);
        config.delivery = DispatcherConfig {
            schedule: RetrySchedule::parse(RETRY_SCHEDULE, 0.0).unwrap(),
            timeout: Duration::from_millis(1000),
            halt_retry: Duration::from_millis(300),
            ..DispatcherConfig::default()
        };
        let node = sipsim_testkit::node::spawn(&config).await;
        TestApp {
            addr: node.addr,
            store: node.store.clone(),
            http: http(),
            database_url,
            _node: node,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn account(&self) -> AccountId {
        self.store.create_account("Acme").await.unwrap().id
    }

    pub async fn client(&self, account: &AccountId, scopes: &str) -> Client {
        let scopes = ScopeSet::parse_list(scopes).unwrap();
        let (c, secret) = sipsim_store::testing::api_client(&*self.store, account, scopes).await;
        Client { id: c.id, secret: secret.expose().to_owned() }
    }

    /// Sets the account's integration as the dashboard would.
    pub async fn integration(&self, account: &AccountId, url: &str, events: &[&str]) {
        self.integration_with(account, url, events, TargetPolicy::PublicHttpsOnly, false).await;
    }

    /// Sets an integration that delivers to a local receiver (http, loopback).
    pub async fn local_integration(&self, account: &AccountId, url: &str, events: &[&str]) {
        self.integration_with(account, url, events, TargetPolicy::AllowInsecure, false).await;
    }

    /// Sets an integration with every knob.
    pub async fn integration_with(
        &self,
        account: &AccountId,
        url: &str,
        events: &[&str],
        policy: TargetPolicy,
        disabled: bool,
    ) {
        let events = EventSet::parse_list(&events.join(",")).unwrap();
        self.store
            .put_integration(
                account,
                IntegrationUpdate {
                    webhook_url: WebhookUrl::parse(url, policy).unwrap(),
                    disabled,
                    events: Some(events),
                    new_signing_secret: SigningSecret::generate(),
                },
            )
            .await
            .unwrap();
    }

    /// A token of a new client of `account` holding `scopes`.
    pub async fn token_for(&self, account: &AccountId, scopes: &str) -> String {
        self.token(&self.client(account, scopes).await, None).await
    }

    /// A token for `client` with the given scope parameter (`None`: all of the client's scopes).
    pub async fn token(&self, client: &Client, scope: Option<&str>) -> String {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_str()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let (status, body) = self.form("/oauth/token", &form, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// An account with an integration and a read+write token: the usual starting point.
    pub async fn ready(&self, events: &[&str]) -> (AccountId, String) {
        let account = self.account().await;
        self.integration(&account, "https://example.com/webhooks/sipsim", events).await;
        let client = self.client(&account, "webhooks.read webhooks.write").await;
        let token = self.token(&client, None).await;
        (account, token)
    }

    /// A fresh server with [`TestApp::ready`]'s account and token.
    pub async fn spawn_ready(events: &[&str]) -> (TestApp, AccountId, String) {
        let app = TestApp::spawn().await;
        let (account, token) = app.ready(events).await;
        (app, account, token)
    }

    /// Sends a request; returns the status, the headers and the body parsed as JSON (`Null` if empty).
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.fetch().await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, headers, body)
    }

    /// `GET path` with a bearer token: the status, the headers and the JSON body.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.call(Method::GET, path, Some(token)).await
    }

    /// `POST path` (no body) with a bearer token.
    pub async fn post(&self, path: &str, token: &str) -> Answer {
        self.call(Method::POST, path, Some(token)).await
    }

    /// `DELETE path` with a bearer token.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.call(Method::DELETE, path, Some(token)).await
    }

    /// POSTs `body` to the ingest route with `key`; returns the status and the JSON answer.
    pub async fn ingest_with(&self, key: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url("/internal/v1/events"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.fetch().await;
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Ingests a JSON value with the right key.
    pub async fn ingest(&self, body: &Value) -> (StatusCode, Value) {
        self.ingest_with(Some(INGEST_KEY), serde_json::to_vec(body).unwrap()).await
    }

    /// Ingests `event`'s documented example for `account`; asserts the 202 and returns the answer.
    pub async fn ingest_example(&self, account: &AccountId, event: Event) -> Value {
        let (status, body) = self.ingest(&example_item(account, event)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// POSTs a form (raw pairs, repeats allowed) with an optional `Authorization` header.
    pub async fn form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> (StatusCode, Value) {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.fetch().await;
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// One ingest item: `event`'s documented example payload for `account`.
pub fn example_item(account: &AccountId, event: Event) -> Value {
    serde_json::json!({
        "account_id": account,
        "event": event.name(),
        "payload": serde_json::from_str::<Value>(sipsim_core::payload::example_json(event)).unwrap(),
    })
}

/// Checks the envelope fields every response has: `request_id` a UUID equal to `X-Request-Id`, and
/// `timestamp` RFC 3339 UTC to the second.
pub fn assert_envelope_meta(headers: &reqwest::header::HeaderMap, body: &Value) {
    let id = body["request_id"].as_str().expect("request_id");
    assert!(is_uuid(id), "request_id {id} is not a UUID");
    assert_eq!(headers.get("x-request-id").and_then(|v| v.to_str().ok()), Some(id));
    let ts = body["timestamp"].as_str().expect("timestamp");
    assert!(is_timestamp(ts), "timestamp {ts} is not YYYY-MM-DDTHH:MM:SSZ");
}

/// Checks a whole error envelope: status, the one message, path, and meta.
pub fn assert_error(
    (status, headers, body): &Answer,
    expected_status: u16,
    message: &str,
    path: &str,
) {
    assert_eq!(status.as_u16(), expected_status, "{body}");
    assert_eq!(body["status"], expected_status);
    assert_eq!(body["errors"], serde_json::json!([message]), "{body}");
    assert_eq!(body["path"], path);
    assert_envelope_meta(headers, body);
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["status", "errors", "request_id", "timestamp", "path"],
        "error envelope: exactly these fields, in the contract's order"
    );
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<_> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// A request sent and its answer read in one step: a test has nothing to do with a transport
/// error but fail.
pub(crate) trait Fetch {
    /// The response, whatever its status.
    async fn fetch(self) -> reqwest::Response;
    /// The response's body as JSON.
    async fn fetch_json<T: serde::de::DeserializeOwned>(self) -> T;
    /// The response's body as text.
    async fn fetch_text(self) -> String;
}

impl Fetch for reqwest::RequestBuilder {
    async fn fetch(self) -> reqwest::Response {
        self.send().await.unwrap()
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(self) -> T {
        self.fetch().await.json().await.unwrap()
    }

    async fn fetch_text(self) -> String {
        self.fetch().await.text().await.unwrap()
    }
}

/// A plain HTTP client for tests. reqwest is built with `rustls-no-provider` in this workspace, so the
/// crypto provider must be installed before any client exists.
pub fn http() -> reqwest::Client {
    sipsim_delivery::install_crypto_provider();
    reqwest::Client::new()
}

/// A `sipsimd serve` child process, killed on drop.
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
    /// Log lines after the one that announced the listener.
    log: std::sync::mpsc::Receiver<String>,
}

impl Server {
    /// Spawns `cmd` (a `sipsimd serve --listen 127.0.0.1:0 …`) and waits for its listen address.
    pub fn spawn(cmd: std::process::Command) -> Server {
        Server::spawn_logging(cmd, "info")
    }

    /// Spawns `cmd` with `RUST_LOG=level`.
    pub fn spawn_logging(mut cmd: std::process::Command, level: &str) -> Server {
        let serving = sipsim_testkit::process::spawn_serving(cmd.env("RUST_LOG", level)).unwrap();
        Server { child: serving.child, base: format!("http://{}", serving.addr), log: serving.log }
    }

    /// A server process started by the test itself, already serving at `base` (its log is the
    /// test's business).
    pub fn adopt(child: std::process::Child, base: String) -> Server {
        Server { child, base, log: std::sync::mpsc::channel().1 }
    }

    /// Every log line received until now (after the listener's).
    pub fn log_so_far(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Waits up to `within` for a log line containing `needle`.
    pub fn log_contains(&self, needle: &str, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while let Ok(line) =
            self.log.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if line.contains(needle) {
                return true;
            }
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an operator command (`sipsimd ARGS --json`) on the database `db_url` and returns its JSON.
pub fn operator(db_url: &str, args: &[&str]) -> serde_json::Value {
    let out = succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_sipsimd"))
            .args(args)
            .arg("--json")
            .env("SIPSIM_DATABASE_URL", db_url)
            .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
            .output(),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Creates an account named `name` with an integration delivering `events` (comma-separated) to
/// `url`, through the operator commands on `db_url`; returns the account id.
pub fn operator_account_with_integration(
    db_url: &str,
    name: &str,
    url: &str,
    events: &str,
) -> String {
    let account =
        operator(db_url, &["account", "create", name])["account_id"].as_str().unwrap().to_owned();
    operator(db_url, argv!("integration set --account {account} --url {url} --events {events}"));
    account
}

/// Waits for spawned tasks and returns their results in order.
pub async fn joined<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// How many of `statuses` are each status code.
pub fn tally(statuses: &[StatusCode]) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(s.as_u16()).or_default() += 1;
    }
    counts
}
