//! `/api/v2/webhooks*`: list the catalog, list subscriptions, enable and disable one event.
//!
//! Error precedence (DESIGN.md): unknown route 404 and wrong method 405 come from the router; then
//! the [`RequireScope`] extractor answers 401 or 403; then an unknown event is 400; only then is the
//! missing integration 404. Each handler's argument order is that precedence.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use percent_encoding::percent_decode_str;
use sipsim_core::envelope::{Envelope, ErrorEnvelope, EventItem, WebhookSetting};
use sipsim_core::store::SubscriptionChange;
use sipsim_core::{Event, EventSet};

use crate::auth::{RequireScope, WebhooksRead, WebhooksWrite};
use crate::error::ApiError;
use crate::request::RequestId;
use crate::state::AppState;

/// The `{event}` path segment, percent-decoded (invalid UTF-8 replaced), not yet checked against the
/// catalog: checking it is the handler's job, after authorization.
pub struct EventSegment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for EventSegment {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The route is `/api/v2/webhooks/{event}`: the event is the last segment of the raw path.
        let raw = parts.uri.path().rsplit('/').next().unwrap_or_default();
        Ok(EventSegment(percent_decode_str(raw).decode_utf8_lossy().into_owned()))
    }
}

/// List every event that can be subscribed to.
#[utoipa::path(
    get, path = "/api/v2/webhooks/available", tag = "webhooks", operation_id = "listAvailableEvents",
    security(("bearer" = ["webhooks.read"])),
    responses(
        (status = 200, description = "The event catalog, in catalog order.", body = Envelope<Vec<EventItem>>,
         example = json!({"status": 200, "request_id": "...", "timestamp": "2025-01-15T10:30:00Z", "data": [
            {"event": "incoming_call_start"}, {"event": "incoming_call_start_chain_member_call"},
            {"event": "incoming_call_end_chain_member_call"}, {"event": "incoming_call_answer"},
            {"event": "incoming_call_end"}, {"event": "outgoing_call_start"}, {"event": "outgoing_call_answer"},
            {"event": "outgoing_call_end"}, {"event": "voicemail"}, {"event": "tags"}, {"event": "speech"},
            {"event": "summary"}, {"event": "sms"}, {"event": "rating"}]})),
        super::Refusals,
        (status = 403, description = "The token lacks `webhooks.read`.", body = ErrorEnvelope),
    )
)]
pub async fn list_available_events(_caller: RequireScope<WebhooksRead>, id: RequestId) -> Response {
    id.ok(EventItem::list(EventSet::ALL))
}

/// List the events the account's webhook is subscribed to.
#[utoipa::path(
    get, path = "/api/v2/webhooks", tag = "webhooks", operation_id = "listEnabledEvents",
    security(("bearer" = ["webhooks.read"])),
    responses(
        (status = 200, description = "Subscribed events, in catalog order.", body = Envelope<Vec<EventItem>>,
         example = json!({"status": 200, "request_id": "...", "timestamp": "2025-01-15T10:30:00Z",
            "data": [{"event": "incoming_call_start"}, {"event": "incoming_call_end"}]})),
        super::Refusals,
        (status = 403, description = "The token lacks `webhooks.read`.", body = ErrorEnvelope),
        (status = 404, description = "The Webhooks integration is not set up.", body = ErrorEnvelope,
         example = json!({"status": 404, "errors": ["Webhook integration not configured. Set a webhook URL via the dashboard first."],
            "request_id": "...", "timestamp": "2025-01-15T10:30:00Z", "path": "/api/v2/webhooks"})),
    )
)]
pub async fn list_enabled_events(
    RequireScope(caller, _): RequireScope<WebhooksRead>,
    id: RequestId,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    // From memory: see `crate::integrations` for how it stays fresh.
    let integration = state
        .integrations
        .get(&*state.store, &caller.account_id)
        .await?
        .ok_or(ApiError::NotConfigured)?;
    Ok(id.ok(EventItem::list(integration.events)))
}

/// Subscribe to one event. Idempotent.
#[utoipa::path(
    post, path = "/api/v2/webhooks/{event}", tag = "webhooks", operation_id = "enableEvent",
    security(("bearer" = ["webhooks.write"])),
    params(("event" = String, Path, description = "An event name from GET /api/v2/webhooks/available.",
            example = "outgoing_call_end")),
    responses(
        (status = 200, description = "The full current webhook setting.", body = Envelope<WebhookSetting>,
         example = json!({"status": 200, "request_id": "...", "timestamp": "2025-01-15T10:30:00Z", "data": {
            "webhook_url": "https://example.com/webhooks/sipsim", "enabled": true,
            "subscribed_events": ["incoming_call_start", "incoming_call_end", "outgoing_call_end"]}})),
        (status = 400, description = "Unknown event.", body = ErrorEnvelope,
         example = json!({"status": 400, "errors": ["Unknown event 'invalid_event'. Use GET /api/v2/webhooks/available for the list of valid events."],
            "request_id": "...", "timestamp": "2025-01-15T10:30:00Z", "path": "/api/v2/webhooks/invalid_event"})),
        super::Refusals,
        (status = 403, description = "The token lacks `webhooks.write`.", body = ErrorEnvelope),
        (status = 404, description = "The Webhooks integration is not set up.", body = ErrorEnvelope),
        (status = 413, description = "Request body too large.", body = ErrorEnvelope),
    )
)]
pub async fn enable_event(
    RequireScope(caller, _): RequireScope<WebhooksWrite>,
    id: RequestId,
    EventSegment(name): EventSegment,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let event = Event::subscribable(&name).ok_or(ApiError::UnknownEvent(name))?;
    change(&state, &caller.account_id, SubscriptionChange::Subscribe(event), id).await
}

/// Unsubscribe from one event. Idempotent.
#[utoipa::path(
    delete, path = "/api/v2/webhooks/{event}", tag = "webhooks", operation_id = "disableEvent",
    security(("bearer" = ["webhooks.write"])),
    params(("event" = String, Path, description = "An event name from GET /api/v2/webhooks/available.",
            example = "incoming_call_start")),
    responses(
        (status = 200, description = "The full current webhook setting.", body = Envelope<WebhookSetting>,
         example = json!({"status": 200, "request_id": "...", "timestamp": "2025-01-15T10:30:00Z", "data": {
            "webhook_url": "https://example.com/webhooks/sipsim", "enabled": true,
            "subscribed_events": ["incoming_call_end", "outgoing_call_end"]}})),
        (status = 400, description = "Unknown event.", body = ErrorEnvelope),
        super::Refusals,
        (status = 403, description = "The token lacks `webhooks.write`.", body = ErrorEnvelope),
        (status = 404, description = "The Webhooks integration is not set up.", body = ErrorEnvelope),
        (status = 413, description = "Request body too large.", body = ErrorEnvelope),
    )
)]
pub async fn disable_event(
    RequireScope(caller, _): RequireScope<WebhooksWrite>,
    id: RequestId,
    EventSegment(name): EventSegment,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let event = Event::subscribable(&name).ok_or(ApiError::UnknownEvent(name))?;
    change(&state, &caller.account_id, SubscriptionChange::Unsubscribe(event), id).await
}

async fn change(
    state: &AppState,
    account: &sipsim_core::AccountId,
    change: SubscriptionChange,
    id: RequestId,
) -> Result<Response, ApiError> {
    let integration = state
        .service()
        .change_subscription(account, change)
        .await?
        .ok_or(ApiError::NotConfigured)?;
    let setting: WebhookSetting = integration.setting();
    Ok(id.ok(setting))
}
