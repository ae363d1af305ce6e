//! `/api/v2/webhook-deliveries`: the attempt log as customers see it, and resending.
//!
//! Listed newest first (one call's, `?call=`, oldest first) with SIPSIM's keyset pagination: `page` is an opaque token (base64 of
//! `{"id": "<last delivery id>"}`, like the reference's example), `has_more` says whether to follow it.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use sipsim_core::DeliveryId;
use sipsim_core::clock::{rfc3339_seconds_from_ms, timestamp_now};
use sipsim_core::envelope::{Envelope, ErrorEnvelope, PagedEnvelope, Pagination};
use sipsim_core::event::Event;
use sipsim_core::queue::{CALL_MAX_LEN, DeliveryFilter, DeliveryRecord, DeliveryStatus};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{RequireScope, WebhooksRead, WebhooksWrite};
use crate::error::ApiError;
use crate::request::RequestId;
use crate::service::deliveries::ResendRefused;
use crate::state::AppState;

/// Items per page unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 100;
/// The most items per page.
const MAX_LIMIT: u32 = 1000;

/// One delivery of one message to the account's webhook URL.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryItem {
    /// The delivery's id (`dlv_…`).
    pub id: String,
    /// The message's id: the `X-Webhook-Id` of every attempt, and of resends.
    pub message_id: String,
    /// The event.
    #[schema(example = "incoming_call_end")]
    pub event: &'static str,
    /// `pending`, `delivering`, `succeeded`, `failed` or `paused`.
    #[schema(example = "succeeded")]
    pub status: &'static str,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only), RFC 3339.
    pub next_attempt_at: Option<String>,
    /// The HTTP status of the last answer, if one came.
    pub last_status_code: Option<u16>,
    /// What went wrong on the last attempt, if it did.
    pub last_error: Option<String>,
    /// When the delivery was created, RFC 3339.
    pub created_at: String,
}

impl From<&DeliveryRecord> for DeliveryItem {
    fn from(d: &DeliveryRecord) -> Self {
        DeliveryItem {
            id: d.id.to_string(),
            message_id: d.message_id.to_string(),
            event: d.event.name(),
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at_ms.map(rfc3339_seconds_from_ms),
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            created_at: rfc3339_seconds_from_ms(d.created_at_ms),
        }
    }
}

/// The query of the list (documentation; parsed by [`ListQuery`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Only deliveries in this state: pending, delivering, succeeded, failed, paused.
    status: Option<String>,
    /// Only deliveries of this event.
    event: Option<String>,
    /// Only deliveries created at or after this RFC 3339 time.
    since: Option<String>,
    /// Only one call's deliveries: those whose event carries this `pbx_id` (call events,
    /// voicemail, tags) or this `call_id` (speech, summary, rating), matched exactly. A call's
    /// `pbx_id` and `call_id` cannot be joined (SIPSIM gives no mapping): search each. Listed in
    /// ingest order, oldest first.
    #[param(example = "pbx_abc123")]
    call: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// The `pagination.page` token of the previous page.
    page: Option<String>,
}

/// The list's query, checked: every problem is a 400 naming the parameter.
struct ListQuery {
    filter: DeliveryFilter,
    limit: u32,
    after: Option<DeliveryId>,
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// Parses the list's query string.
fn parse_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery { filter: DeliveryFilter::default(), limit: DEFAULT_LIMIT, after: None };
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if seen.iter().any(|k| *k == key) {
            return Err(bad(format!("Query parameter '{key}' is repeated.")));
        }
        seen.push(key.to_string());
        match &*key {
            "status" => {
                q.filter.status = Some(DeliveryStatus::parse(&value).ok_or_else(|| {
                    bad("Query parameter 'status' must be one of pending, delivering, succeeded, failed, paused.".into())
                })?);
            }
            "event" => {
                q.filter.event = Some(Event::from_name(&value).ok_or_else(|| {
                    bad("Query parameter 'event' must be an event name from GET /api/v2/webhooks/available, or test.".into())
                })?);
            }
            "since" => {
                let t = time::OffsetDateTime::parse(
                    &value,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| {
                    bad("Query parameter 'since' must be an RFC 3339 time such as 2025-01-15T10:30:00Z.".into())
                })?;
                q.filter.since_ms = Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
            }
            "limit" => {
                q.limit = value.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(
                    || bad("Query parameter 'limit' must be an integer from 1 to 1000.".into()),
                )?;
            }
            "call" => {
                if value.is_empty() || value.len() > CALL_MAX_LEN {
                    return Err(bad(
                        "Query parameter 'call' must be a pbx_id or call_id of 1 to 200 characters."
                            .into(),
                    ));
                }
                q.filter.call = Some(value.into_owned());
            }
            "page" => q.after = Some(decode_page(&value)?),
            other => {
                return Err(bad(format!(
                    "Unknown query parameter '{}'. The list takes status, event, since, call, limit and page.",
                    other.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok(q)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PageToken {
    id: String,
}

fn encode_page(last: &DeliveryId) -> String {
    let json = serde_json::to_vec(&PageToken { id: last.to_string() }).unwrap_or_default();
    STANDARD.encode(json)
}

fn decode_page(token: &str) -> Result<DeliveryId, ApiError> {
    let invalid =
        || bad("Query parameter 'page' is not a page token from a previous response.".into());
    let raw = STANDARD
        .decode(token)
        .or_else(|_| URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')))
        .map_err(|_| invalid())?;
    let parsed: PageToken = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    DeliveryId::parse(&parsed.id).map_err(|_| invalid())
}

/// List the account's deliveries, newest first; one call's (`call`) in ingest order.
#[utoipa::path(
    get, path = "/api/v2/webhook-deliveries", tag = "deliveries", operation_id = "listDeliveries",
    security(("bearer" = ["webhooks.read"])),
    params(ListParams),
    responses(
        (status = 200, description = "One page of deliveries, newest first (with `call`: oldest first, in ingest order).", body = PagedEnvelope<DeliveryItem>),
        (status = 400, description = "A query parameter is invalid (the message names it).", body = ErrorEnvelope),
        super::Refusals,
        (status = 403, description = "The token lacks `webhooks.read`.", body = ErrorEnvelope),
    )
)]
pub async fn list_deliveries(
    RequireScope(caller, _): RequireScope<WebhooksRead>,
    id: RequestId,
    uri: axum::http::Uri,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    let q = parse_query(uri.query())?;
    let mut rows = state
        .store
        .list_deliveries(&caller.account_id, &q.filter, q.after.as_ref(), q.limit + 1)
        .await?;
    let has_more = rows.len() > q.limit as usize;
    rows.truncate(q.limit as usize);
    let page = if has_more { rows.last().map(|d| encode_page(&d.id)) } else { None };
    let data: Vec<DeliveryItem> = rows.iter().map(DeliveryItem::from).collect();
    Ok(Json(PagedEnvelope {
        status: 200,
        request_id: id.0.to_string(),
        timestamp: timestamp_now(),
        pagination: Pagination { count: data.len(), limit: q.limit, page, has_more },
        data,
    })
    .into_response())
}

/// Send a delivery's message again, now, as a new delivery (same `X-Webhook-Id`).
#[utoipa::path(
    post, path = "/api/v2/webhook-deliveries/{id}/resend", tag = "deliveries", operation_id = "resendDelivery",
    security(("bearer" = ["webhooks.write"])),
    params(("id" = String, Path, description = "A delivery id from the list.")),
    responses(
        (status = 202, description = "Queued: the new delivery.", body = Envelope<DeliveryItem>),
        (status = 400, description = "A test delivery (use Send Test instead).", body = ErrorEnvelope),
        super::Refusals,
        (status = 403, description = "The token lacks `webhooks.write`.", body = ErrorEnvelope),
        (status = 404, description = "No such delivery in this account, or no integration.", body = ErrorEnvelope),
    )
)]
pub async fn resend_delivery(
    RequireScope(caller, _): RequireScope<WebhooksWrite>,
    id: RequestId,
    uri: axum::http::Uri,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    // The route is /api/v2/webhook-deliveries/{id}/resend: the id is the second-to-last segment.
    let raw = uri.path().rsplit('/').nth(1).unwrap_or_default();
    let delivery_id = DeliveryId::parse(raw).map_err(|_| ApiError::DeliveryNotFound)?;
    let created =
        state.service().resend(&caller.account_id, &delivery_id).await.map_err(|refused| {
            match refused {
                ResendRefused::NotFound => ApiError::DeliveryNotFound,
                ResendRefused::TestEvent => bad(refused.to_string()),
                ResendRefused::NoIntegration => ApiError::NotConfigured,
                ResendRefused::Store(e) => e.into(),
            }
        })?;
    Ok(id.accepted(DeliveryItem::from(&created)))
}
