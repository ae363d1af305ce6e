//! The client's errors: what the API said (its envelope, or RFC 6749's body on `/oauth/token`), or why
//! no answer could be read.

use std::time::Duration;

use serde::Deserialize;

/// Everything a [`Client`](crate::Client) call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with its error envelope.
    #[error("{0}")]
    Api(ApiError),
    /// `POST /oauth/token` refused the credentials (RFC 6749 §5.2).
    #[error("token request refused ({status}): {error}{}", .description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    OAuth {
        /// The HTTP status (400 or 401).
        status: u16,
        /// The RFC 6749 error code: `invalid_client`, `invalid_scope`, …
        error: String,
        /// The server's explanation.
        description: Option<String>,
    },
    /// The request did not get an answer (connection refused, timeout, TLS).
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// What was requested.
        url: String,
        /// Why it failed.
        message: String,
    },
    /// The server answered something that is not the API's shape (a proxy's error page, say).
    #[error("unexpected answer from {url} (HTTP {status}): {message}")]
    Unexpected {
        /// What was requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        message: String,
    },
    /// The client was built wrong (a bad base URL, no credentials).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The API's error, if the API answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// The API's error envelope: `{"status", "errors", "request_id", "timestamp", "path"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The server's messages.
    #[serde(default)]
    pub errors: Vec<String>,
    /// The request's id, to quote to support (also the `X-Request-Id` header).
    #[serde(default)]
    pub request_id: Option<String>,
    /// The path the server received.
    #[serde(default)]
    pub path: Option<String>,
    /// How long to wait before retrying, from `Retry-After` (429 and 503).
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

/// What kind of problem an [`ApiError`] is, for code that branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// 401: the token is missing, invalid, expired or revoked.
    Unauthorized,
    /// 403: the token lacks a scope.
    InsufficientScope,
    /// 404 on the webhook routes: the account has no webhook integration yet.
    NotConfigured,
    /// 400 naming an unknown event.
    UnknownEvent,
    /// Another 404 (a delivery id that is not the account's).
    NotFound,
    /// Another 400: a parameter is invalid.
    BadRequest,
    /// 429: too many requests; see [`ApiError::retry_after`].
    RateLimited,
    /// 5xx.
    Server,
    /// Anything else.
    Other,
}

impl ApiError {
    /// The kind of problem.
    pub fn kind(&self) -> ApiErrorKind {
        let first = self.errors.first().map(String::as_str).unwrap_or_default();
        match self.status {
            401 => ApiErrorKind::Unauthorized,
            403 => ApiErrorKind::InsufficientScope,
            404 if first.starts_with("Webhook integration not configured") => {
                ApiErrorKind::NotConfigured
            }
            404 => ApiErrorKind::NotFound,
            400 if first.starts_with("Unknown event '") => ApiErrorKind::UnknownEvent,
            400 => ApiErrorKind::BadRequest,
            429 => ApiErrorKind::RateLimited,
            500..=599 => ApiErrorKind::Server,
            _ => ApiErrorKind::Other,
        }
    }

    /// The server's messages as one line.
    pub fn message(&self) -> String {
        if self.errors.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            self.errors.join("; ")
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {}", self.message(), self.status)?;
        if let Some(id) = &self.request_id {
            write!(f, ", request {id}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for ApiError {}

/// RFC 6749's error body.
#[derive(Deserialize)]
pub(crate) struct OAuthErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, message: &str) -> ApiError {
        ApiError {
            status,
            errors: vec![message.to_owned()],
            request_id: Some("r1".into()),
            path: None,
            retry_after: None,
        }
    }

    #[test]
    fn kinds_follow_the_contract_texts() {
        assert_eq!(
            error(
                404,
                "Webhook integration not configured. Set a webhook URL via the dashboard first."
            )
            .kind(),
            ApiErrorKind::NotConfigured
        );
        assert_eq!(error(404, "Delivery not found.").kind(), ApiErrorKind::NotFound);
        assert_eq!(
            error(
                400,
                "Unknown event 'x'. Use GET /api/v2/webhooks/available for the list of valid events."
            )
            .kind(),
            ApiErrorKind::UnknownEvent
        );
        assert_eq!(error(400, "bad").kind(), ApiErrorKind::BadRequest);
        assert_eq!(error(401, "").kind(), ApiErrorKind::Unauthorized);
        assert_eq!(error(403, "").kind(), ApiErrorKind::InsufficientScope);
        assert_eq!(error(503, "").kind(), ApiErrorKind::Server);
        assert_eq!(
            error(403, "Insufficient scope: webhooks.write required.").to_string(),
            "Insufficient scope: webhooks.write required. (HTTP 403, request r1)"
        );
    }
}
