//! `POST /internal/v1/events`: how the telephony core hands events to the webhook system.
//!
//! Guarded by `SIPSIM_INGEST_KEY` (the route is not served without one). The body is one item or an
//! array of up to 1,000; the batch is atomic: every item is validated first, every problem reported at
//! once (`[index].field: message`), and nothing is stored unless all are valid. `202` is answered only
//! after the transaction committed, so an accepted event survives a `kill -9` of the server.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use sipsim_core::envelope::{Envelope, ErrorEnvelope};
use sipsim_core::queue::IngestOutcome;
use sipsim_core::{AccountId, StoreError};
use utoipa::ToSchema;

pub use sipsim_core::ingest::{
    INGEST_BODY_LIMIT, MAX_BATCH, MAX_ERRORS, MAX_IDEMPOTENCY_KEY, parse_batch, parse_item,
};

use crate::error::{error_chain, error_response};
use crate::request::RequestId;
use crate::state::AppState;

/// One event to ingest (documentation of the wire shape).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IngestItem {
    /// The account (`acc_…`).
    account_id: String,
    /// An event name from the catalog (`test` is not accepted).
    #[schema(example = "incoming_call_start")]
    event: String,
    /// The event's documented payload.
    #[schema(value_type = Object)]
    payload: Value,
    /// A key of the sender's choosing: a repeat within 24 h is not stored or delivered again.
    idempotency_key: Option<String>,
}

/// What happened to one ingested item.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResult {
    /// The message id (also the deliveries' `X-Webhook-Id`).
    pub message_id: String,
    /// Whether a delivery was queued.
    pub enqueued: bool,
    /// Why not: `no integration`, `integration disabled`, `not subscribed` or `duplicate`.
    pub reason: Option<&'static str>,
    /// Whether the idempotency key was seen within 24 h (the first message's id is returned).
    pub duplicate: bool,
}

impl From<&IngestOutcome> for IngestResult {
    fn from(o: &IngestOutcome) -> Self {
        let (enqueued, reason, duplicate) = match o {
            IngestOutcome::Enqueued { .. } => (true, None, false),
            IngestOutcome::Skipped { reason, .. } => (false, Some(reason.as_str()), false),
            IngestOutcome::Duplicate { .. } => (false, Some("duplicate"), true),
        };
        IngestResult { message_id: o.message_id().to_string(), enqueued, reason, duplicate }
    }
}

fn errors_response(status: StatusCode, errors: Vec<String>) -> Response {
    let mut r = error_response(status, String::new());
    r.extensions_mut().insert(crate::error::ErrorBody(errors));
    r
}

/// Ingest events (internal).
#[utoipa::path(
    post, path = "/internal/v1/events", tag = "internal", operation_id = "ingestEvents",
    security(("ingest_key" = [])),
    request_body(content = Vec<IngestItem>, description = "One item, or an array of 1 to 1,000 items."),
    responses(
        (status = 202, description = "Stored durably; one result per item, in order.", body = Envelope<Vec<IngestResult>>),
        (status = 400, description = "Malformed JSON or invalid items (every problem as `[index].field: message`); nothing stored.", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong ingest key.", body = ErrorEnvelope),
        (status = 404, description = "An item names an unknown account; nothing stored.", body = ErrorEnvelope),
        (status = 413, description = "Body over 4 MiB.", body = ErrorEnvelope),
        (status = 503, description = "Storage is full: nothing stored; retry after `Retry-After` seconds.", body = ErrorEnvelope),
    )
)]
pub async fn ingest_events(
    State(state): State<AppState>,
    id: RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(expected) = state.ingest_key else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !presented.is_some_and(|key| expected.matches(key)) {
        let mut r = error_response(StatusCode::UNAUTHORIZED, "Missing or invalid ingest key.");
        r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let messages = match parse_batch(&body) {
        Ok(m) => m,
        Err(errors) => return errors_response(StatusCode::BAD_REQUEST, errors),
    };
    // Which items name which account, for a 404 naming each bad item. The store checks the
    // accounts itself and stores nothing if one is unknown, so they are looked up one by one only
    // then: the happy path makes no round trip per account.
    let mut by_account: BTreeMap<AccountId, Vec<usize>> = BTreeMap::new();
    for (i, m) in messages.iter().enumerate() {
        by_account.entry(m.account_id.clone()).or_default().push(i);
    }
    match state.storage_alarm.watch_storage(state.ingest.ingest(messages).await) {
        Ok(outcomes) => {
            let data: Vec<IngestResult> = outcomes.iter().map(IngestResult::from).collect();
            id.accepted(data)
        }
        Err(StoreError::AccountNotFound(acc)) => {
            match unknown_accounts(&state, &by_account).await {
                Some(missing) => missing,
                // Deleted between the two reads: name the one the store saw.
                None => errors_response(
                    StatusCode::NOT_FOUND,
                    vec![format!("account {acc} does not exist")],
                ),
            }
        }
        Err(e) => crate::error::ApiError::Store(e).into_response(),
    }
}

/// A 404 naming every item whose account does not exist, or `None` if all exist.
async fn unknown_accounts(
    state: &AppState,
    by_account: &BTreeMap<AccountId, Vec<usize>>,
) -> Option<Response> {
    let mut missing = BTreeSet::new();
    for (account, indexes) in by_account {
        match state.store.get_account(account).await {
            Ok(Some(_)) => {}
            Ok(None) => missing.extend(indexes.iter().map(|i| (*i, account.clone()))),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "account lookup failed");
                return Some(crate::error::ApiError::Store(e).into_response());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let errors = missing
        .into_iter()
        .take(MAX_ERRORS)
        .map(|(i, acc)| format!("[{i}].account_id: account {acc} does not exist"))
        .collect();
    Some(errors_response(StatusCode::NOT_FOUND, errors))
}
