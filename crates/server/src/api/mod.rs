//! `/api/v2`: the public API SIPSIM's customers code against.

pub mod deliveries;
pub mod webhooks;

use sipsim_core::envelope::ErrorEnvelope;
use utoipa::IntoResponses;

/// What any `webhooks.read` route can refuse with, as the OpenAPI document lists it.
#[derive(IntoResponses)]
pub enum ReadRefusals {
    #[response(status = 401, description = "Missing or invalid access token.")]
    Unauthenticated(ErrorEnvelope),
    #[response(status = 403, description = "The token lacks `webhooks.read`.")]
    NoScope(ErrorEnvelope),
    #[response(
        status = 429,
        description = "Over this API client's rate limit (`Retry-After` says when to retry)."
    )]
    RateLimited(ErrorEnvelope),
}

/// What any `webhooks.write` route can refuse with, as the OpenAPI document lists it.
#[derive(IntoResponses)]
pub enum WriteRefusals {
    #[response(status = 401, description = "Missing or invalid access token.")]
    Unauthenticated(ErrorEnvelope),
    #[response(status = 403, description = "The token lacks `webhooks.write`.")]
    NoScope(ErrorEnvelope),
    #[response(
        status = 429,
        description = "Over this API client's rate limit (`Retry-After` says when to retry)."
    )]
    RateLimited(ErrorEnvelope),
}
