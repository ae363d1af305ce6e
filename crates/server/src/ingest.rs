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
use sipsim_core::event::Event;
use sipsim_core::payload::Payload;
use sipsim_core::queue::{IngestOutcome, NewMessage};
use sipsim_core::{AccountId, StoreError};
use utoipa::ToSchema;

use crate::error::{error_chain, error_response};
use crate::request::RequestId;
use crate::state::AppState;

/// Most items in one request.
pub const MAX_BATCH: usize = 1000;
/// Largest ingest body.
pub const INGEST_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Most problems reported for one request.
const MAX_ERRORS: usize = 100;

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
        IngestResult {
            message_id: o.message_id().to_string(),
            enqueued,
            reason,
            duplicate,
        }
    }
}

/// Validates one item (`index` names it in errors) into a message ready to store.
pub fn parse_item(index: usize, item: &Value) -> Result<NewMessage, Vec<String>> {
    let at = |field: &str, message: String| format!("[{index}].{field}: {message}");
    let Some(obj) = item.as_object() else {
        return Err(vec![format!("[{index}]: must be an object")]);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !["account_id", "event", "payload", "idempotency_key"].contains(&key.as_str()) {
            errors.push(at(key, "unknown field".to_owned()));
        }
    }
    let account = match obj.get("account_id") {
        None => Err(at("account_id", "missing".to_owned())),
        Some(Value::String(s)) => AccountId::parse(s).map_err(|e| at("account_id", e.to_string())),
        Some(_) => Err(at("account_id", "must be a string".to_owned())),
    };
    let event = match obj.get("event") {
        None => Err(at("event", "missing".to_owned())),
        Some(Value::String(s)) => match Event::from_name(s) {
            Some(Event::Test) => Err(at(
                "event",
                "'test' cannot be ingested: it is sent only by Send Test".to_owned(),
            )),
            Some(e) => Ok(e),
            None => Err(at("event", format!("unknown event '{}'", short(s)))),
        },
        Some(_) => Err(at("event", "must be a string".to_owned())),
    };
    let key = match obj.get("idempotency_key") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_IDEMPOTENCY_KEY => {
            Ok(Some(s.clone()))
        }
        Some(Value::String(_)) => Err(at(
            "idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        )),
        Some(_) => Err(at("idempotency_key", "must be a string".to_owned())),
    };
    let payload = match (obj.get("payload"), &event) {
        (None, _) => Err(at("payload", "missing".to_owned())),
        (Some(p), Ok(event)) => {
            let raw = serde_json::to_vec(p).unwrap_or_default();
            Payload::parse(*event, &raw).map_err(|e| {
                let field = if e.field == "." {
                    "payload".to_owned()
                } else {
                    format!("payload.{}", e.field)
                };
                at(&field, e.message)
            })
        }
        // Without a valid event there is no schema to check the payload against.
        (Some(_), Err(_)) => Err(String::new()),
    };
    for r in [
        account.as_ref().err(),
        event.as_ref().err(),
        key.as_ref().err(),
        payload.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        if !r.is_empty() {
            errors.push(r.clone());
        }
    }
    match (account, payload, key) {
        (Ok(account_id), Ok(payload), Ok(idempotency_key)) if errors.is_empty() => Ok(NewMessage {
            account_id,
            event: payload.event(),
            body: payload.to_json(),
            ordering_key: payload.ordering_key(),
            idempotency_key,
        }),
        _ => Err(errors),
    }
}

/// Parses a whole request body into messages, or every problem found.
pub fn parse_batch(body: &[u8]) -> Result<Vec<NewMessage>, Vec<String>> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| vec![format!("Malformed JSON: {e}")])?;
    let items = match value {
        Value::Array(items) if items.is_empty() => {
            return Err(vec![
                "The batch is empty: send one item or an array of 1 to 1,000.".to_owned(),
            ]);
        }
        Value::Array(items) if items.len() > MAX_BATCH => {
            return Err(vec![format!(
                "The batch has {} items; the limit is 1,000.",
                items.len()
            )]);
        }
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(vec![
                "The body must be an object or an array of objects.".to_owned(),
            ]);
        }
    };
    let mut messages = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match parse_item(i, item) {
            Ok(m) => messages.push(m),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(messages)
    } else {
        errors.truncate(MAX_ERRORS);
        Err(errors)
    }
}

fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

fn errors_response(status: StatusCode, errors: Vec<String>) -> Response {
    let mut r = error_response(status, String::new());
    r.extensions_mut().insert(crate::error::ErrorBody(errors));
    r
}

/// Ingest events (internal).
#[utoipa::path(
    post,
    path = "/internal/v1/events",
    tag = "internal",
    operation_id = "ingestEvents",
    security(("ingest_key" = [])),
    request_body(content = Vec<IngestItem>, description = "One item, or an array of 1 to 1,000 items."),
    responses(
        (status = 202, description = "Stored durably; one result per item, in order.", body = Envelope<Vec<IngestResult>>),
        (status = 400, description = "Malformed JSON or invalid items (every problem as `[index].field: message`); nothing stored.", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong ingest key.", body = ErrorEnvelope),
        (status = 404, description = "An item names an unknown account; nothing stored.", body = ErrorEnvelope),
        (status = 413, description = "Body over 4 MiB.", body = ErrorEnvelope),
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
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let messages = match parse_batch(&body) {
        Ok(m) => m,
        Err(errors) => return errors_response(StatusCode::BAD_REQUEST, errors),
    };
    if let Some(missing) = unknown_accounts(&state, &messages).await {
        return missing;
    }
    match state.ingest.ingest(messages).await {
        Ok(outcomes) => {
            let data: Vec<IngestResult> = outcomes.iter().map(IngestResult::from).collect();
            id.accepted(data)
        }
        Err(StoreError::AccountNotFound(acc)) => errors_response(
            StatusCode::NOT_FOUND,
            vec![format!("account {acc} does not exist")],
        ),
        Err(e) => crate::error::ApiError::Store(e).into_response(),
    }
}

/// A 404 naming every item whose account does not exist, or `None` if all exist.
async fn unknown_accounts(state: &AppState, messages: &[NewMessage]) -> Option<Response> {
    let mut by_account: BTreeMap<&AccountId, Vec<usize>> = BTreeMap::new();
    for (i, m) in messages.iter().enumerate() {
        by_account.entry(&m.account_id).or_default().push(i);
    }
    let mut missing = BTreeSet::new();
    for (account, indexes) in &by_account {
        match state.store.get_account(account).await {
            Ok(Some(_)) => {}
            Ok(None) => missing.extend(indexes.iter().map(|i| (*i, (*account).clone()))),
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
