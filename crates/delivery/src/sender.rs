//! One attempt: build the signed request, send it through the guarded client, judge the answer.
//!
//! Every attempt is signed afresh with the current time (Standard Webhooks verifiers refuse
//! timestamps older than about five minutes). The whole attempt — connect, TLS, request, response
//! head and the first KiB of the body — shares one timeout; redirects are not followed; a response
//! body is never read past its first KiB.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sipsim_core::clock::{now_ms, now_secs};
use sipsim_core::queue::{AttemptRecord, ClaimedDelivery};
use sipsim_core::signing::{sipsim_signature, standard_signature};
use sipsim_core::target::{TargetPolicy, forbidden_reason};

use crate::resolve::{Blocked, DnsOverrides, GuardedResolver};

/// How much of a response body is kept for the attempt log.
pub const SNIPPET_BYTES: usize = 1024;

/// How the sender is set up.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// The whole attempt's time limit (SIPSIM documents 2 s).
    pub timeout: Duration,
    /// Whether http:// and private targets are allowed.
    pub policy: TargetPolicy,
    /// Names resolved without DNS (`SIPSIM_DNS_OVERRIDES`).
    pub dns_overrides: DnsOverrides,
    /// Extra trusted roots, PEM (`SIPSIM_EXTRA_CA_CERTS`), for tests with their own CA.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            timeout: Duration::from_secs(2),
            policy: TargetPolicy::PublicHttpsOnly,
            dns_overrides: DnsOverrides::new(),
            extra_ca_pem: None,
        }
    }
}

/// Why a sender could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The extra CA file is not PEM certificates.
    #[error("SIPSIM_EXTRA_CA_CERTS holds no usable PEM certificate")]
    BadCa(#[source] reqwest::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The judgement of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx arrived.
    Success,
    /// Anything else: another status, a timeout, a refused or failed connection, a blocked target.
    Failure {
        /// A `429` or `503` with `Retry-After` asked us to wait this long.
        retry_after: Option<Duration>,
    },
    /// `410 Gone`: the endpoint says it will never take deliveries again.
    Gone,
}

impl Verdict {
    /// A failure with nothing more to say.
    pub const FAILURE: Verdict = Verdict::Failure { retry_after: None };
}

/// What one request carries besides its body.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Where.
    pub url: &'a str,
    /// `X-Webhook-Id` and `webhook-id`: the same on every attempt of a message.
    pub message_id: &'a str,
    /// `X-Webhook-Event`.
    pub event: &'a str,
    /// The exact body.
    pub body: &'a [u8],
    /// The signing secret (`whsec_…`).
    pub secret: &'a str,
    /// The secret before the last regeneration, while still valid: `webhook-signature` carries a
    /// signature with it too (SIPSIM's one-value `X-Webhook-Signature` uses the current one only).
    pub previous_secret: Option<&'a str>,
}

/// Sends webhook requests.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    timeout: Duration,
    policy: TargetPolicy,
}

static X_WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("x-webhook-signature");
static X_WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("x-webhook-timestamp");
static X_WEBHOOK_ID: HeaderName = HeaderName::from_static("x-webhook-id");
static X_WEBHOOK_EVENT: HeaderName = HeaderName::from_static("x-webhook-event");
static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

impl Sender {
    /// Builds the HTTP client: rustls with the system's roots (plus any extra CA), no proxy, no
    /// redirects, the guarded resolver, pooled keep-alive connections.
    pub fn new(config: SenderConfig) -> Result<Sender, SenderError> {
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver::new(config.dns_overrides, config.policy))
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("sipsim-webhooks/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(SenderError::BadCa)?;
            builder = builder.tls_certs_merge(certs);
        }
        Ok(Sender {
            client: builder.build().map_err(SenderError::Client)?,
            timeout: config.timeout,
            policy: config.policy,
        })
    }

    /// Attempts a claimed delivery.
    pub async fn deliver(&self, d: &ClaimedDelivery) -> (AttemptRecord, Verdict) {
        self.send(Outgoing {
            url: &d.webhook_url,
            message_id: d.message_id.as_str(),
            event: d.event.name(),
            body: &d.body,
            secret: d.signing_secret.expose(),
            previous_secret: d.previous_signing_secret.as_ref().map(|s| s.expose()),
        })
        .await
    }

    /// Makes one signed attempt and reports it.
    pub async fn send(&self, out: Outgoing<'_>) -> (AttemptRecord, Verdict) {
        let started_at_ms = now_ms();
        let clock = Instant::now();
        let result = match self.refuse_literal_target(out.url) {
            Some(blocked) => Err(blocked),
            None => {
                // The head must arrive within the timeout; the body is read for what is left of it.
                let deadline = tokio::time::Instant::now() + self.timeout;
                match tokio::time::timeout_at(deadline, self.request(out)).await {
                    Ok(Ok(response)) => Ok(read_answer(response, deadline).await),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(format!("timeout after {}", fmt_duration(self.timeout))),
                }
            }
        };
        let duration_ms = clock.elapsed().as_millis() as i64;
        let (status_code, error, response_snippet, verdict) = match result {
            Ok(answer) => {
                let status = answer.status;
                let verdict = match status {
                    200..=299 => Verdict::Success,
                    410 => Verdict::Gone,
                    429 | 503 => Verdict::Failure { retry_after: answer.retry_after },
                    _ => Verdict::FAILURE,
                };
                (
                    Some(status),
                    (verdict != Verdict::Success).then(|| format!("HTTP {status}")),
                    Some(answer.snippet),
                    verdict,
                )
            }
            Err(error) => (None, Some(error), None, Verdict::FAILURE),
        };
        (
            AttemptRecord { started_at_ms, duration_ms, status_code, error, response_snippet },
            verdict,
        )
    }

    /// Literal-IP hosts never reach the resolver, and plain http is refused here too.
    fn refuse_literal_target(&self, url: &str) -> Option<String> {
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(_) => return Some("blocked: the webhook URL does not parse".to_owned()),
        };
        if self.policy == TargetPolicy::AllowInsecure {
            return None;
        }
        if parsed.scheme() != "https" {
            return Some("blocked: only https:// targets are allowed".to_owned());
        }
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
            Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
            _ => return None,
        };
        forbidden_reason(ip).map(|reason| format!("blocked: {ip} is a {reason} address"))
    }

    /// Sends the signed request and waits for the response's head.
    async fn request(&self, out: Outgoing<'_>) -> Result<reqwest::Response, String> {
        let headers = signed_headers(out).map_err(|e| format!("cannot sign: {e}"))?;
        self.client
            .post(out.url)
            .headers(headers)
            .body(out.body.to_vec())
            .send()
            .await
            .map_err(|e| describe(&e))
    }
}

/// The status and the first KiB of the body, read until `deadline`. The status is what counts: a
/// body cut short, trickling past the deadline or far too big does not change the verdict, and no
/// more than a KiB of it is ever held.
async fn read_answer(mut response: reqwest::Response, deadline: tokio::time::Instant) -> Answer {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let mut snippet = Vec::new();
    while snippet.len() < SNIPPET_BYTES {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = SNIPPET_BYTES - snippet.len();
                snippet.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(Ok(None) | Err(_)) | Err(_) => break,
        }
    }
    // Dropping the response here closes a connection whose body was not read to the end.
    Answer { status, snippet: String::from_utf8_lossy(&snippet).into_owned(), retry_after }
}

/// What came back from the endpoint.
struct Answer {
    status: u16,
    snippet: String,
    retry_after: Option<Duration>,
}

/// `Retry-After`: delay-seconds, or an HTTP-date (RFC 9110 §10.2.3). A date in the past is no delay.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// The request headers of DESIGN.md § Delivery, signed now.
fn signed_headers(out: Outgoing<'_>) -> Result<HeaderMap, String> {
    let ts = now_secs();
    let value = |s: &str| HeaderValue::from_str(s).map_err(|e| e.to_string());
    let mut h = HeaderMap::with_capacity(9);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(X_WEBHOOK_TIMESTAMP.clone(), value(&ts.to_string())?);
    h.insert(X_WEBHOOK_SIGNATURE.clone(), value(&sipsim_signature(out.secret, ts, out.body))?);
    h.insert(X_WEBHOOK_ID.clone(), value(out.message_id)?);
    h.insert(X_WEBHOOK_EVENT.clone(), value(out.event)?);
    h.insert(WEBHOOK_ID.clone(), value(out.message_id)?);
    h.insert(WEBHOOK_TIMESTAMP.clone(), value(&ts.to_string())?);
    let secrets: Vec<&str> = std::iter::once(out.secret).chain(out.previous_secret).collect();
    let standard = standard_signature(&secrets, out.message_id, ts, out.body);
    h.insert(WEBHOOK_SIGNATURE.clone(), value(&standard)?);
    Ok(h)
}

/// A short, operator-readable account of a failed request: the innermost meaningful cause.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<Blocked>() {
            return b.to_string();
        }
        source = s.source();
    }
    let innermost = {
        let mut last: &dyn std::error::Error = e;
        while let Some(s) = last.source() {
            last = s;
        }
        last.to_string()
    };
    let kind = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_request() || e.is_body() {
        "request failed"
    } else {
        "error"
    };
    let text = format!("{kind}: {innermost}");
    match text.char_indices().nth(300) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
