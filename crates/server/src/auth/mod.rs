//! Authentication and authorization of `/api/v2`: access tokens, the revoked-client list, and the
//! [`RequireScope`] extractor through which every handler states the scope it needs.

pub use sipsim_core::jwt;
pub mod revocations;

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sipsim_core::clock::now_secs;
use sipsim_core::{AccountId, ClientId, Scope};

use crate::error::ApiError;
use crate::limits::{Decision, retry_after_secs};
use crate::request::Notes;
use crate::state::AppState;

/// Who is calling: the API client behind a valid access token.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The client.
    pub client_id: ClientId,
    /// The account it acts for; every query is confined to it.
    pub account_id: AccountId,
}

/// A scope a handler requires, as a type, so the requirement shows in the handler's signature.
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Marker for `webhooks.read`.
pub struct WebhooksRead;
impl RequiredScope for WebhooksRead {
    const SCOPE: Scope = Scope::WebhooksRead;
}

/// Marker for `webhooks.write`.
pub struct WebhooksWrite;
impl RequiredScope for WebhooksWrite {
    const SCOPE: Scope = Scope::WebhooksWrite;
}

/// Extracts the caller of a request whose token is valid, unrevoked and carries scope `S`:
/// otherwise the request ends with 401 (no usable token) or 403 (token without the scope).
pub struct RequireScope<S: RequiredScope>(pub Principal, pub PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<AppState> for RequireScope<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        let claims = state.jwt.verify(token, now_secs()).map_err(|e| {
            tracing::debug!(reason = %e, "access token refused");
            ApiError::Unauthorized
        })?;
        if state.revocations.is_revoked(&claims.client_id) {
            tracing::debug!(client_id = %claims.client_id, "token of a deleted client refused");
            return Err(ApiError::Unauthorized);
        }
        if let Some(limiter) = &state.api_limiter {
            let (decision, quota) = limiter.check(&claims.client_id);
            if let Some(notes) = parts.extensions.get::<Notes>() {
                notes.quota(quota);
            }
            if let Decision::Limited { retry_after } = decision {
                let rate = limiter.rate();
                return Err(ApiError::RateLimited {
                    per_second: rate.per_second as u32,
                    burst: rate.burst,
                    retry_after: retry_after_secs(retry_after),
                });
            }
        }
        if !claims.scopes.contains(S::SCOPE) {
            return Err(ApiError::InsufficientScope(S::SCOPE));
        }
        Ok(RequireScope(
            Principal { client_id: claims.client_id, account_id: claims.account_id },
            PhantomData,
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
