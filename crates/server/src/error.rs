//! The HTTP boundary's error type: every failure of `/api/v2` becomes one of these, and this is the one
//! place that chooses its status, message and headers. The body (the contract's error envelope, with
//! `request_id` and `path`) is written by [`crate::request`], which knows those.

use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sipsim_core::{Scope, StoreError};

/// The messages of an error response, attached to it for [`crate::request::context`] to render.
#[derive(Debug, Clone)]
pub struct ErrorBody(pub Vec<String>);

/// A cause that is logged with the request id but never sent.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// How long an echoed event name may be before it is cut.
const ECHO_MAX_CHARS: usize = 64;

/// Errors of the public API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or one that is malformed, tampered, expired or of a deleted client.
    #[error("Missing or invalid access token.")]
    Unauthorized,
    /// A valid token without the scope the route needs.
    #[error("Insufficient scope: {0} required.")]
    InsufficientScope(Scope),
    /// An event name that is not in the catalog (the contract's text).
    #[error(
        "Unknown event '{}'. Use GET /api/v2/webhooks/available for the list of valid events.",
        echo(.0)
    )]
    UnknownEvent(String),
    /// The account has no integration yet (the contract's text).
    #[error("Webhook integration not configured. Set a webhook URL via the dashboard first.")]
    NotConfigured,
    /// A malformed query parameter or request; the message says which and why.
    #[error("{0}")]
    BadRequest(String),
    /// No delivery with that id in the caller's account.
    #[error("Delivery not found.")]
    DeliveryNotFound,
    /// The API client sent more requests than its rate allows.
    #[error(
        "Too many requests: this API client may make {per_second} requests per second (bursts of {burst}). Retry after {retry_after} s."
    )]
    RateLimited {
        /// The limit's rate.
        per_second: u32,
        /// The limit's burst.
        burst: u32,
        /// Whole seconds until a request is allowed again.
        retry_after: u64,
    },
    /// A store failure: 500, with the cause only in the logs.
    #[error("Internal server error.")]
    Store(#[from] StoreError),
}

/// An event name as echoed back: at most 64 characters, then `…`.
fn echo(name: &str) -> String {
    match name.char_indices().nth(ECHO_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

/// What a request that could not be stored for want of space is told; it may retry after
/// [`STORAGE_FULL_RETRY_AFTER`] seconds.
pub const STORAGE_FULL_MESSAGE: &str =
    "Storage is full: nothing was stored. Retry later; the operator has been alerted (/readyz).";
/// Seconds to wait before retrying a request refused because storage is full.
pub const STORAGE_FULL_RETRY_AFTER: u64 = 30;

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Store(StoreError::StorageFull(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::UnknownEvent(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotConfigured | ApiError::DeliveryNotFound => StatusCode::NOT_FOUND,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Store(StoreError::StorageFull(_)) => STORAGE_FULL_MESSAGE.to_owned(),
            other => other.to_string(),
        };
        let mut response = error_response(self.status(), message);
        let headers = response.headers_mut();
        match &self {
            ApiError::Store(e @ StoreError::StorageFull(_)) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(STORAGE_FULL_RETRY_AFTER));
                response.extensions_mut().insert(InternalCause(error_chain(e)));
            }
            ApiError::Unauthorized => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            ApiError::InsufficientScope(scope) => {
                let value = format!(r#"Bearer error="insufficient_scope", scope="{scope}""#);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(WWW_AUTHENTICATE, v);
                }
            }
            ApiError::RateLimited { retry_after, .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::Store(e) => {
                response.extensions_mut().insert(InternalCause(error_chain(e)));
            }
            ApiError::UnknownEvent(_)
            | ApiError::NotConfigured
            | ApiError::BadRequest(_)
            | ApiError::DeliveryNotFound => {}
        }
        response
    }
}

/// A response with `status` whose envelope will carry `message`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = status.into_response();
    response.extensions_mut().insert(ErrorBody(vec![message.into()]));
    response
}

/// An error and all its sources, for the log.
pub use sipsim_core::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_texts() {
        assert_eq!(
            ApiError::UnknownEvent("invalid_event".into()).to_string(),
            "Unknown event 'invalid_event'. Use GET /api/v2/webhooks/available for the list of valid events."
        );
        assert_eq!(
            ApiError::NotConfigured.to_string(),
            "Webhook integration not configured. Set a webhook URL via the dashboard first."
        );
        assert_eq!(
            ApiError::InsufficientScope(Scope::WebhooksWrite).to_string(),
            "Insufficient scope: webhooks.write required."
        );
    }

    #[test]
    fn long_names_are_cut_on_characters() {
        let long = "é".repeat(100);
        let e = echo(&long);
        assert_eq!(e.chars().count(), 65);
        assert!(e.ends_with('…'));
        assert_eq!(echo(&"a".repeat(64)), "a".repeat(64));
    }
}
