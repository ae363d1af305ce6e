//! The OpenAPI 3.1 `webhooks` section: what this server POSTs to a customer's URL, one entry per
//! event (the 14 and `test`), each payload's JSON Schema derived from the types that build it
//! (`sipsim_core::payload::schema`) with the documented example. utoipa has no `webhooks` field, so
//! the section is added to the generated document as JSON.

use serde_json::{Map, Value, json};
use sipsim_core::event::Event;
use sipsim_core::payload::example_json;
use sipsim_core::payload::schema::{PayloadSchema, payload_schema};

/// The headers of every delivery, as the reference and Standard Webhooks name them.
const HEADERS: [(&str, &str); 7] = [
    (
        "X-Webhook-Signature",
        "SIPSIM's signature: hex HMAC-SHA256 of `{timestamp}.{body}`, keyed with the signing secret's UTF-8 bytes.",
    ),
    ("X-Webhook-Timestamp", "Unix seconds when this attempt was signed."),
    ("X-Webhook-Event", "The event name."),
    ("X-Webhook-Id", "The message id, the same on every attempt and resend: deduplicate on it."),
    ("webhook-id", "Standard Webhooks: the message id."),
    ("webhook-timestamp", "Standard Webhooks: Unix seconds."),
    ("webhook-signature", "Standard Webhooks: `v1,<base64>` per valid secret, space-separated."),
];

/// `doc` (the generated document as JSON) with the `webhooks` section, and the schemas its
/// payloads refer to under `components.schemas`.
pub fn add_webhooks(mut doc: Value) -> Value {
    let mut webhooks = Map::new();
    let mut referred_all = Map::new();
    for event in Event::CATALOG.into_iter().chain([Event::Test]) {
        let PayloadSchema { schema, referred } = payload_schema(event);
        referred_all.extend(referred);
        let example: Value = serde_json::from_str(example_json(event)).unwrap_or(Value::Null);
        let parameters: Vec<Value> = HEADERS
            .iter()
            .map(|(name, description)| {
                json!({"name": name, "in": "header", "required": true, "description": description,
                       "schema": {"type": "string"}})
            })
            .collect();
        webhooks.insert(
            event.name().to_owned(),
            json!({"post": {
                "operationId": format!("webhook_{}", event.name()),
                "summary": format!("The `{}` event, POSTed to your webhook URL", event.name()),
                "parameters": parameters,
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": schema, "example": example}}},
                "responses": {
                    "2XX": {"description": "Received: any 2xx within 2 s ends the delivery."},
                    "410": {"description": "Gone: the integration is paused until you resume it."},
                    "default": {"description": "Anything else, or no answer in time: retried on the schedule."}
                }
            }}),
        );
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (name, schema) in referred_all {
            schemas.entry(name).or_insert(schema);
        }
    }
    if let Some(object) = doc.as_object_mut() {
        object.insert("webhooks".into(), Value::Object(webhooks));
    }
    doc
}
