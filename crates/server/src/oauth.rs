//! `POST /oauth/token`: the OAuth 2.0 client-credentials grant, as SIPSIM documents it.
//!
//! The form is parsed by hand rather than by a typed extractor, because RFC 6749 wants answers a
//! generic extractor cannot give: a repeated parameter is `invalid_request` (§3.2), unknown
//! parameters are ignored, and the client may authenticate with HTTP Basic or with form fields, but
//! not both (§2.3). Errors use RFC 6749 §5.2's `{"error", "error_description"}` shape, which OAuth
//! client libraries parse, instead of the API envelope.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use sipsim_core::clock::{now_ms, now_secs};
use sipsim_core::secret::SecretHash;
use sipsim_core::{ClientId, scope};
use utoipa::ToSchema;

use crate::auth::jwt::AccessClaims;
use crate::client_addr::ClientAddr;
use crate::error::error_chain;
use crate::limits::{Decision, retry_after_secs};
use crate::state::{AppState, TOKEN_TTL_SECS};

/// The form fields of a token request (documentation only; the handler parses the form itself).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// Always `client_credentials`.
    #[schema(example = "client_credentials")]
    grant_type: String,
    /// The API client's id (or use HTTP Basic authentication).
    #[schema(example = "cli_01jd8k3m4n5p6q7r8s9t0v1w2x")]
    client_id: Option<String>,
    /// The API client's secret (or use HTTP Basic authentication).
    client_secret: Option<String>,
    /// Space-separated scopes; all of the client's scopes when absent. Other SIPSIM scopes
    /// (`account.read`, `calls.read`, …) may be named beside ours: the token gets the requested
    /// scopes that this server serves and the client holds (RFC 6749 §3.3), and the response's
    /// `scope` lists them. `invalid_scope`: a name that is no SIPSIM scope, or nothing to grant.
    #[schema(example = "webhooks.read webhooks.write")]
    scope: Option<String>,
}

/// A successful token response, exactly as SIPSIM documents it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The token to send as `Authorization: Bearer …`.
    #[schema(example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...")]
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Lifetime in seconds (2 hours).
    #[schema(example = 7200)]
    pub expires_in: i64,
    /// Granted scopes, space-separated: what was asked for, served here and held by the client.
    #[schema(example = "webhooks.read webhooks.write")]
    pub scope: String,
    /// Unix time of creation.
    #[schema(example = 1705312200)]
    pub created_at: i64,
}

/// An RFC 6749 §5.2 error.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_scope` or `unsupported_grant_type`.
    #[schema(example = "invalid_client")]
    pub error: &'static str,
    /// What went wrong, for a person.
    #[schema(example = "Client authentication failed.")]
    pub error_description: String,
}

enum TokenError {
    InvalidRequest(String),
    InvalidClient,
    InvalidScope(String),
    UnsupportedGrantType,
    /// Too many token requests from this address or for this client: wait this many seconds.
    SlowDown(u64),
    Internal(String),
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let (status, error, description) = match self {
            TokenError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            TokenError::InvalidClient => {
                let mut r = oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Client authentication failed.".into(),
                );
                // RFC 6749 §5.2: a client that tried Basic must get a Basic challenge; the others get
                // one too, so clients that wait for a challenge before sending credentials proceed.
                r.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="sipsim-webhooks""#),
                );
                return r;
            }
            TokenError::InvalidScope(d) => (StatusCode::BAD_REQUEST, "invalid_scope", d),
            TokenError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only grant_type=client_credentials is supported.".into(),
            ),
            TokenError::SlowDown(retry_after) => {
                let mut r = oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "slow_down",
                    format!(
                        "Too many token requests. Tokens last 2 hours: reuse one until it expires. Retry after {retry_after} s."
                    ),
                );
                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after));
                return r;
            }
            TokenError::Internal(cause) => {
                tracing::error!(%cause, "token request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "Internal server error.".into())
            }
        };
        oauth_error(status, error, description)
    }
}

fn oauth_error(status: StatusCode, error: &'static str, error_description: String) -> Response {
    let mut r = (status, Json(OAuthError { error, error_description })).into_response();
    no_store(r.headers_mut());
    r
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The parameters of a token request that we read, each at most once.
#[derive(Default)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

impl TokenForm {
    fn parse(body: &[u8]) -> Result<Self, TokenError> {
        let mut form = TokenForm::default();
        for (key, value) in form_urlencoded::parse(body) {
            let slot = match &*key {
                "grant_type" => &mut form.grant_type,
                "client_id" => &mut form.client_id,
                "client_secret" => &mut form.client_secret,
                "scope" => &mut form.scope,
                _ => continue,
            };
            if slot.is_some() {
                return Err(TokenError::InvalidRequest(format!(
                    "Parameter '{key}' is repeated; each parameter may appear once."
                )));
            }
            *slot = Some(value.into_owned());
        }
        Ok(form)
    }
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: each part form-url-encoded).
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), TokenError>> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bad = || TokenError::InvalidClient;
    let parsed = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let decode = |s: &str| {
                percent_decode_str(&s.replace('+', " ")).decode_utf8().ok().map(|c| c.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        })
        .ok_or_else(bad);
    Some(parsed)
}

/// Issue an access token (OAuth 2.0 client credentials).
#[utoipa::path(
    post, path = "/oauth/token", tag = "oauth", operation_id = "issueToken",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A new access token.", body = TokenResponse,
         example = json!({"access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...", "token_type": "Bearer",
            "expires_in": 7200, "scope": "webhooks.read webhooks.write", "created_at": 1705312200})),
        (status = 400, description = "`invalid_request`, `invalid_scope` (a name that is no SIPSIM scope, or none of the requested scopes both served here and held by the client; the description names the scopes served) or `unsupported_grant_type`.", body = OAuthError),
        (status = 401, description = "`invalid_client`: unknown client or wrong secret.", body = OAuthError),
        (status = 429, description = "`slow_down`: too many failed token requests from this address, or too many tokens for this client (`Retry-After`).", body = OAuthError),
        (status = 413, description = "Request body too large.", body = sipsim_core::envelope::ErrorEnvelope),
    )
)]
pub async fn issue_token(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Every request counts as a failure of its (address, client_id) pair until it has succeeded,
    // so a flood of bad requests is refused here, before any database read, while the clients
    // that send a right secret are never refused for what others sent.
    let attempt = match &state.token_failures {
        Some(limiter) => match limiter.attempt(address, &claimed_client_id(&headers, &body)) {
            Ok(counted) => Some(counted),
            Err(wait) => return TokenError::SlowDown(retry_after_secs(wait)).into_response(),
        },
        None => None,
    };
    let issued = issue(&state, &headers, &body).await;
    if let Some(attempt) = attempt {
        match &issued {
            Ok(_) => attempt.succeeded(),
            // Not the client's failure.
            Err(TokenError::Internal(_) | TokenError::SlowDown(_)) => attempt.forget(),
            Err(_) => attempt.failed(),
        }
    }
    match issued {
        Ok(token) => {
            let mut r = Json(token).into_response();
            no_store(r.headers_mut());
            r
        }
        Err(e) => e.into_response(),
    }
}

/// The `client_id` a request names (form field or HTTP Basic), as the failure limits count it:
/// only a well-formed id counts as itself (so made-up 16 KiB ids take no memory); anything else
/// counts as one subject, "unreadable", for its address.
fn claimed_client_id(headers: &HeaderMap, body: &[u8]) -> String {
    let from_form = || {
        form_urlencoded::parse(body).find(|(k, _)| k == "client_id").map(|(_, v)| v.into_owned())
    };
    let named = match basic_credentials(headers) {
        Some(Ok((id, _))) => Some(id),
        Some(Err(_)) => None,
        None => from_form(),
    };
    match named.as_deref().map(ClientId::parse) {
        Some(Ok(id)) => id.to_string(),
        _ => "unreadable".to_owned(),
    }
}

async fn issue(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, TokenError> {
    let form_content = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_content {
        return Err(TokenError::InvalidRequest(
            "Send the parameters as Content-Type: application/x-www-form-urlencoded.".into(),
        ));
    }
    let form = TokenForm::parse(body)?;
    match form.grant_type.as_deref() {
        None | Some("") => {
            return Err(TokenError::InvalidRequest("Missing parameter: grant_type.".into()));
        }
        Some("client_credentials") => {}
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    }

    let basic = basic_credentials(headers).transpose()?;
    let (client_id, secret) = match (basic, form.client_id, form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(TokenError::InvalidRequest(
                "Authenticate the client with HTTP Basic or with form fields, not both.".into(),
            ));
        }
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => return Err(TokenError::InvalidClient),
    };

    let client = match ClientId::parse(&client_id) {
        Ok(id) => {
            state.store.get_client(&id).await.map_err(|e| TokenError::Internal(error_chain(&e)))?
        }
        Err(_) => None,
    };
    let Some(client) = client else {
        // Hash anyway, so an unknown client costs the same time as a wrong secret.
        let _ = SecretHash::of(&secret);
        return Err(TokenError::InvalidClient);
    };
    if !client.secret_hash.matches(&secret) || state.revocations.is_revoked(&client.id) {
        return Err(TokenError::InvalidClient);
    }
    // Tokens last two hours: a client asking for many is misbehaving. Counted only now that the
    // client has proved who it is, so nobody else can spend its budget.
    if let Some(limiter) = &state.token_limiter
        && let Decision::Limited { retry_after } = limiter.check(&client.id).0
    {
        return Err(TokenError::SlowDown(retry_after_secs(retry_after)));
    }

    // RFC 6749 §3.3: what was asked, served here and held by the client; other SIPSIM scopes in
    // the request are left out of the grant, and the response's `scope` says what was granted.
    let granted = match form.scope.as_deref().map(str::trim) {
        None | Some("") => client.scopes,
        Some(requested) => scope::grant(requested, client.scopes)
            .map_err(|refusal| TokenError::InvalidScope(refusal.to_string()))?,
    };

    let now = now_secs();
    let access_token = state.jwt.issue(&AccessClaims {
        client_id: client.id.clone(),
        account_id: client.account_id.clone(),
        scopes: granted,
        issued_at: now,
        expires_at: now + TOKEN_TTL_SECS,
    });
    if let Err(e) = state.store.record_client_use(&client.id, now_ms()).await {
        tracing::warn!(client_id = %client.id, error = %error_chain(&e), "could not record client use");
    }
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: TOKEN_TTL_SECS,
        scope: granted.to_string(),
        created_at: now,
    })
}
