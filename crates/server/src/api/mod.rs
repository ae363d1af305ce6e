//! `/api/v2`: the public API SIPSIM's customers code against.

pub mod deliveries;
pub mod payloads;
pub mod webhooks;

use sipsim_core::envelope::ErrorEnvelope;
use utoipa::IntoResponses;

/// What every `/api/v2` route can refuse with before it looks at the request, as the OpenAPI
/// document lists it (the 403 names the route's scope, so each route lists its own).
#[derive(IntoResponses)]
pub enum Refusals {
    #[response(status = 401, description = "Missing or invalid access token.")]
    Unauthenticated(ErrorEnvelope),
    #[response(
        status = 429,
        description = "Over this API client's rate limit (`Retry-After` says when to retry)."
    )]
    RateLimited(ErrorEnvelope),
}
