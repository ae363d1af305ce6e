//! Per-request context: the request id, the size guard, the error envelope and the log line.
//!
//! Every response leaves through [`context`], which gives it `X-Request-Id` and, when it is an error
//! without a JSON body of its own, the contract's error envelope (`status`, `errors`, `request_id`,
//! `timestamp`, `path`). That one place covers our handlers' errors, axum's 404 and 405, body-size
//! rejections and caught panics alike.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sipsim_core::clock::timestamp_now;
use sipsim_core::envelope::{Envelope, ErrorEnvelope};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{ErrorBody, InternalCause};
use crate::limits::Quota;

/// Largest request body `/api/v2` and `/oauth/token` accept.
pub const API_BODY_LIMIT: usize = 16 * 1024;

/// The `X-Request-Id` header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request, also sent as `X-Request-Id` and in every envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .copied()
            .unwrap_or_else(|| RequestId(Uuid::new_v4())))
    }
}

impl RequestId {
    /// A `200` envelope around `data`.
    pub fn ok<T: Serialize>(self, data: T) -> Response {
        self.envelope(StatusCode::OK, data)
    }

    /// A `202 Accepted` envelope around `data` (stored, to be delivered).
    pub fn accepted<T: Serialize>(self, data: T) -> Response {
        self.envelope(StatusCode::ACCEPTED, data)
    }

    fn envelope<T: Serialize>(self, status: StatusCode, data: T) -> Response {
        (
            status,
            Json(Envelope {
                status: status.as_u16(),
                request_id: self.0.to_string(),
                timestamp: timestamp_now(),
                data,
            }),
        )
            .into_response()
    }
}

/// What the inner layers leave for [`context`] about a request: the caller's quota, for the
/// `RateLimit-*` headers, and the route it matched, for the metrics' `route` label.
#[derive(Clone, Default)]
pub struct Notes(Arc<NotesInner>);

#[derive(Default)]
struct NotesInner {
    quota: OnceLock<Quota>,
    route: OnceLock<MatchedPath>,
}

impl Notes {
    /// Notes the caller's quota (the rate limiter, once it has counted the request).
    pub fn quota(&self, quota: Quota) {
        let _ = self.0.quota.set(quota);
    }
}

/// Notes the route template the router matched (`route_layer`, so only for a request that
/// matched one: an unknown path keeps the label `other`). A plain function of the request, not a
/// `from_fn` middleware: that would clone the route's service and box a future on every request,
/// for what is one `Arc` copy.
pub fn note_route(request: Request) -> Request {
    if let (Some(notes), Some(route)) =
        (request.extensions().get::<Notes>(), request.extensions().get::<MatchedPath>())
    {
        let _ = notes.0.route.set(route.clone());
    }
    request
}

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The middleware that gives every request its id and every error its envelope.
pub async fn context(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId(Uuid::new_v4());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let notes = Notes::default();
    request.extensions_mut().insert(id);
    request.extensions_mut().insert(notes.clone());

    // Every line logged while handling the request carries its id.
    let span = tracing::info_span!("request", request_id = %id.0);
    let mut response = next.run(request).instrument(span).await;
    crate::observe::record_request(
        notes.0.route.get().map(MatchedPath::as_str),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );

    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let cause = response.extensions_mut().remove::<InternalCause>();
        if status.is_server_error() {
            tracing::error!(
                request_id = %id.0, %method, %path, status = status.as_u16(),
                cause = cause.as_ref().map(|c| c.0.as_str()).unwrap_or("unknown"),
                "request failed"
            );
        } else {
            tracing::debug!(request_id = %id.0, %method, %path, status = status.as_u16(), "request refused");
        }
        response = with_envelope(response, id, path);
    } else {
        tracing::debug!(
            request_id = %id.0, %method, %path, status = status.as_u16(),
            micros = started.elapsed().as_micros() as u64, "request"
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id.0.to_string()) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    if let Some(q) = notes.0.quota.get() {
        let headers = response.headers_mut();
        headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(q.limit));
        headers.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(q.remaining));
        headers.insert(RATELIMIT_RESET.clone(), HeaderValue::from(q.reset_secs));
    }
    response
}

/// Replaces the body of an error response with the error envelope, unless it already is JSON of
/// its own (the OAuth errors of RFC 6749 are) or a dashboard page. Headers such as `WWW-Authenticate` and `Allow` stay.
fn with_envelope(mut response: Response, id: RequestId, path: String) -> Response {
    let body = response.extensions_mut().remove::<ErrorBody>();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // The dashboard's own error pages are HTML meant for a person: they stay as they are.
    let is_html = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if body.is_none() && (is_json || is_html) {
        return response;
    }
    let status = response.status();
    let errors = match body {
        Some(ErrorBody(errors)) => errors,
        None => vec![default_message(status, response.headers(), &path)],
    };
    let envelope = ErrorEnvelope {
        status: status.as_u16(),
        errors,
        request_id: id.0.to_string(),
        timestamp: timestamp_now(),
        path,
    };
    let json = serde_json::to_vec(&envelope).unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json))
}

/// The message for errors raised outside our handlers (routing, body limits, panics).
fn default_message(status: StatusCode, headers: &HeaderMap, path: &str) -> String {
    match status {
        StatusCode::NOT_FOUND => {
            "Not found. GET /api/v2/openapi.json lists the routes this server answers.".to_owned()
        }
        StatusCode::METHOD_NOT_ALLOWED => match headers.get(ALLOW).and_then(|v| v.to_str().ok()) {
            Some(allow) if !allow.is_empty() => {
                format!("Method not allowed. This route answers: {}.", allow.replace(',', ", "))
            }
            _ => "Method not allowed.".to_owned(),
        },
        StatusCode::PAYLOAD_TOO_LARGE => too_large_message(body_limit(path)),
        StatusCode::INTERNAL_SERVER_ERROR => "Internal server error.".to_owned(),
        other => other
            .canonical_reason()
            .map(|r| format!("{r}."))
            .unwrap_or_else(|| format!("HTTP {}.", other.as_u16())),
    }
}

/// The body limit of a path, as the router's layers set it (`crate::app`): 4 MiB for ingest,
/// 16 KiB for everything else. Only the 413's message reads it.
fn body_limit(path: &str) -> usize {
    if path.starts_with("/internal/") {
        sipsim_core::ingest::INGEST_BODY_LIMIT
    } else {
        API_BODY_LIMIT
    }
}

fn too_large_message(limit: usize) -> String {
    if limit >= 1024 * 1024 {
        format!("Request body too large (the limit is {} MiB).", limit / (1024 * 1024))
    } else {
        format!("Request body too large (the limit is {} KiB).", limit / 1024)
    }
}
