//! The HTTP client: one `reqwest` connection pool, the cached token, and one method per route.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use url::Url;

use crate::error::{ApiError, Error, OAuthErrorBody};
use crate::types::{Data, Delivery, DeliveryPage, EventItem, Token, WebhookSetting};

/// A token is renewed when less than this share of its life is left (12 minutes of 2 hours)…
const RENEW_FRACTION: u32 = 10;
/// …or less than this, whichever is longer.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// How the client authenticates.
enum Auth {
    /// Client credentials: tokens are requested, cached and renewed.
    Credentials { client_id: String, client_secret: String, scope: Option<String> },
    /// A token given by the caller, used as is.
    Token(String),
}

struct Cached {
    token: String,
    renew_at: Instant,
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    base_url: String,
    auth: Option<Auth>,
    timeout: Duration,
}

impl ClientBuilder {
    /// Authenticate with OAuth client credentials (`POST /oauth/token`); tokens are cached and
    /// renewed before they expire, and once more if the API refuses one (a rotated key, say).
    pub fn credentials(mut self, client_id: &str, client_secret: &str) -> Self {
        self.auth = Some(Auth::Credentials {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            scope: None,
        });
        self
    }

    /// Ask for these scopes (space-separated) instead of all of the client's. Only with
    /// [`credentials`](Self::credentials).
    pub fn scope(mut self, scope: &str) -> Self {
        if let Some(Auth::Credentials { scope: s, .. }) = &mut self.auth {
            *s = Some(scope.to_owned());
        }
        self
    }

    /// Authenticate with an access token obtained elsewhere; it is never renewed.
    pub fn access_token(mut self, token: &str) -> Self {
        self.auth = Some(Auth::Token(token.to_owned()));
        self
    }

    /// The time limit of each request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client, Error> {
        let base = Url::parse(&self.base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| {
                Error::Config(format!(
                    "the API URL '{}' is not an http:// or https:// URL",
                    self.base_url
                ))
            })?;
        let auth = self.auth.ok_or_else(|| {
            Error::Config("no credentials: give a client id and secret, or an access token".into())
        })?;
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("sipsim-client/", env!("CARGO_PKG_VERSION")))
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            auth,
            cached: Mutex::new(None),
            tokens_requested: AtomicU64::new(0),
        })
    }
}

/// Filters of [`Client::list_deliveries`].
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// `pending`, `delivering`, `succeeded`, `failed` or `paused`.
    pub status: Option<String>,
    /// One event name.
    pub event: Option<String>,
    /// Only deliveries created at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only one call's: its `pbx_id` or its `call_id`, matched exactly (listed oldest first).
    pub call: Option<String>,
    /// Items per page, 1 to 1000 (server default 100).
    pub limit: Option<u32>,
    /// `pagination.page` of the previous page.
    pub page: Option<String>,
}

/// An async client of SIPSIM's webhook API. Cheap to share behind an `Arc`; every method takes
/// `&self`.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    cached: Mutex<Option<Cached>>,
    tokens_requested: AtomicU64,
}

/// How long after it was issued a token of this life is renewed: when a tenth of its life is left,
/// or 30 seconds, whichever is longer.
fn renew_after(life: Duration) -> Duration {
    let margin = (life / RENEW_FRACTION).max(RENEW_MARGIN).min(life);
    life - margin
}

impl Client {
    /// Starts building a client of the API at `base_url` (`https://app.sipsim.com`).
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            auth: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// `GET /api/v2/webhooks/available`: every event that can be subscribed to, in catalog order.
    pub async fn available_events(&self) -> Result<Vec<String>, Error> {
        let items: Vec<EventItem> =
            self.call(Method::GET, &["api", "v2", "webhooks", "available"], &[]).await?;
        Ok(items.into_iter().map(|i| i.event).collect())
    }

    /// `GET /api/v2/webhooks`: the events the account is subscribed to.
    pub async fn enabled_events(&self) -> Result<Vec<String>, Error> {
        let items: Vec<EventItem> = self.call(Method::GET, &["api", "v2", "webhooks"], &[]).await?;
        Ok(items.into_iter().map(|i| i.event).collect())
    }

    /// `POST /api/v2/webhooks/{event}`: subscribe (idempotent).
    pub async fn enable_event(&self, event: &str) -> Result<WebhookSetting, Error> {
        self.call(Method::POST, &["api", "v2", "webhooks", event], &[]).await
    }

    /// `DELETE /api/v2/webhooks/{event}`: unsubscribe (idempotent).
    pub async fn disable_event(&self, event: &str) -> Result<WebhookSetting, Error> {
        self.call(Method::DELETE, &["api", "v2", "webhooks", event], &[]).await
    }

    /// `GET /api/v2/webhook-deliveries`: one page, newest first (one call's oldest first).
    pub async fn list_deliveries(&self, query: &DeliveryQuery) -> Result<DeliveryPage, Error> {
        let mut params: Vec<(&str, String)> = Vec::new();
        let fields = [
            ("status", &query.status),
            ("event", &query.event),
            ("since", &query.since),
            ("call", &query.call),
            ("page", &query.page),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                params.push((name, v.clone()));
            }
        }
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        let url = self.url(&["api", "v2", "webhook-deliveries"], &params)?;
        let body = self.authorized(Method::GET, url).await?;
        serde_json::from_slice(&body.bytes).map_err(|e| body.unexpected(e))
    }

    /// `POST /api/v2/webhook-deliveries/{id}/resend`: sends the delivery's message again now, as a new
    /// delivery with the same `X-Webhook-Id`; returns the new delivery.
    pub async fn resend_delivery(&self, id: &str) -> Result<Delivery, Error> {
        self.call(Method::POST, &["api", "v2", "webhook-deliveries", id, "resend"], &[]).await
    }

    /// `POST /oauth/token`: a new token for the client's credentials (not cached; the other methods
    /// use the cache).
    pub async fn request_token(&self) -> Result<Token, Error> {
        let Auth::Credentials { client_id, client_secret, scope } = &self.auth else {
            return Err(Error::Config(
                "this client was given an access token, not credentials".into(),
            ));
        };
        let url = self.url(&["oauth", "token"], &[])?;
        self.tokens_requested.fetch_add(1, Ordering::Relaxed);
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.as_str()));
        }
        let request = self.http.post(url.clone()).form(&form);
        let body = Answer::read(url, request).await?;
        if body.status.is_success() {
            return serde_json::from_slice(&body.bytes).map_err(|e| body.unexpected(e));
        }
        match serde_json::from_slice::<OAuthErrorBody>(&body.bytes) {
            Ok(e) => Err(Error::OAuth {
                status: body.status.as_u16(),
                error: e.error,
                description: e.error_description,
            }),
            Err(e) => Err(body.unexpected(e)),
        }
    }

    /// How many tokens this client has asked `/oauth/token` for (cached tokens are reused).
    pub fn tokens_requested(&self) -> u64 {
        self.tokens_requested.load(Ordering::Relaxed)
    }

    /// The bearer token to send: the given one, or a cached one renewed when near its end.
    async fn bearer(&self, force_renew: bool) -> Result<String, Error> {
        if let Auth::Token(token) = &self.auth {
            return Ok(token.clone());
        }
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && !force_renew
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let token = self.request_token().await?;
        *cached = Some(Cached {
            token: token.access_token.clone(),
            renew_at: Instant::now() + renew_after(Duration::from_secs(token.expires_in)),
        });
        Ok(token.access_token)
    }

    /// Calls a route and returns its envelope's `data`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        let url = self.url(segments, query)?;
        let body = self.authorized(method, url).await?;
        serde_json::from_slice::<Data<T>>(&body.bytes)
            .map(|d| d.data)
            .map_err(|e| body.unexpected(e))
    }

    /// Sends an authorized request; a success answer is returned, an error answer becomes an
    /// [`Error`]. A 401 with cached credentials is retried once with a fresh token.
    async fn authorized(&self, method: Method, url: Url) -> Result<Answer, Error> {
        let renewable = matches!(self.auth, Auth::Credentials { .. });
        let mut renew = false;
        loop {
            let token = self.bearer(renew).await?;
            let request = self.http.request(method.clone(), url.clone()).bearer_auth(token);
            let answer = Answer::read(url.clone(), request).await?;
            if answer.status == StatusCode::UNAUTHORIZED && renewable && !renew {
                renew = true;
                continue;
            }
            return answer.into_result();
        }
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, Error> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config(format!("the API URL '{}' cannot have a path", self.base)))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }
}

/// A whole answer, read.
struct Answer {
    url: Url,
    status: StatusCode,
    retry_after: Option<Duration>,
    bytes: Vec<u8>,
}

impl Answer {
    async fn read(url: Url, request: reqwest::RequestBuilder) -> Result<Answer, Error> {
        let transport =
            |e: reqwest::Error| Error::Transport { url: url.to_string(), message: describe(&e) };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await.map_err(transport)?.to_vec();
        Ok(Answer { url, status, retry_after, bytes })
    }

    fn into_result(self) -> Result<Answer, Error> {
        if self.status.is_success() {
            return Ok(self);
        }
        match serde_json::from_slice::<ApiError>(&self.bytes) {
            Ok(mut e) => {
                e.retry_after = self.retry_after;
                Err(Error::Api(e))
            }
            Err(e) => Err(self.unexpected(e)),
        }
    }

    fn unexpected(&self, e: serde_json::Error) -> Error {
        let start: String = String::from_utf8_lossy(&self.bytes).chars().take(120).collect();
        Error::Unexpected {
            url: self.url.to_string(),
            status: self.status.as_u16(),
            message: if start.trim().is_empty() {
                format!("empty body ({e})")
            } else {
                format!("{e} in: {start}")
            },
        }
    }
}

/// A transport error with its causes (reqwest's own message is only "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.to_string()
    };
    out.push_str(&sipsim_core::causes(e));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        // SIPSIM's two-hour tokens: renewed after 1 h 48 min.
        assert_eq!(renew_after(Duration::from_secs(7200)), Duration::from_secs(6480));
        // Short ones keep 30 s in hand; ones shorter than that are renewed every time.
        assert_eq!(renew_after(Duration::from_secs(100)), Duration::from_secs(70));
        assert_eq!(renew_after(Duration::from_secs(20)), Duration::ZERO);
    }
}
