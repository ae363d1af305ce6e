//! The ingest format: how the telephony core hands events over (`POST /internal/v1/events`, and the
//! operator commands that write directly). One item or an array of up to 1,000; every item is checked
//! against its event's documented payload, and every problem is reported at once as
//! `[index].field: message`. Pure: no I/O, so it can be fuzzed on its own.

use serde_json::Value;

use crate::AccountId;
use crate::event::Event;
use crate::payload::Payload;
use crate::queue::NewMessage;

/// Most items in one request.
pub const MAX_BATCH: usize = 1000;
/// Largest ingest body.
pub const INGEST_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Most problems reported for one request.
pub const MAX_ERRORS: usize = 100;

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
        Some(Value::String(_)) => {
            Err(at("idempotency_key", format!("must be 1 to {MAX_IDEMPOTENCY_KEY} characters")))
        }
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
    for r in
        [account.as_ref().err(), event.as_ref().err(), key.as_ref().err(), payload.as_ref().err()]
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
            return Err(vec![format!("The batch has {} items; the limit is 1,000.", items.len())]);
        }
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(vec!["The body must be an object or an array of objects.".to_owned()]);
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

pub fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}
