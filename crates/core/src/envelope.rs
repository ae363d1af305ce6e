//! The response envelope and the objects of the webhook subscription API, exactly as the contract
//! shows them: field names and key order matter (serde writes fields in declaration order).

use serde::Serialize;
use utoipa::ToSchema;

use crate::EventSet;
use crate::event::Event;

/// A successful response: `{"status", "request_id", "timestamp", "data"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// The HTTP status code, repeated.
    #[schema(example = 200)]
    pub status: u16,
    /// A UUID naming this request; also sent as the `X-Request-Id` header.
    #[schema(example = "550e8400-e29b-41d4-a716-446655440000")]
    pub request_id: String,
    /// When the response was made: RFC 3339 UTC to the second.
    #[schema(example = "2025-01-15T10:30:00Z")]
    pub timestamp: String,
    /// The payload.
    pub data: T,
}

/// A successful list response with keyset pagination: `{"status", "request_id", "timestamp", "data",
/// "pagination"}`, as SIPSIM's list endpoints answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PagedEnvelope<T> {
    /// The HTTP status code, repeated.
    #[schema(example = 200)]
    pub status: u16,
    /// A UUID naming this request; also sent as the `X-Request-Id` header.
    pub request_id: String,
    /// When the response was made: RFC 3339 UTC to the second.
    pub timestamp: String,
    /// This page's items.
    pub data: Vec<T>,
    /// Where the next page is.
    pub pagination: Pagination,
}

/// SIPSIM's keyset pagination object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// Items in this response.
    pub count: usize,
    /// The most items a page holds.
    pub limit: u32,
    /// The token of the next page (pass it as `page`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "eyJpZCI6ImRsdl8wMW04ZzVobjQ1ZTkyeWgyZDkzc3diYmExeCJ9")]
    pub page: Option<String>,
    /// Whether more pages exist.
    pub has_more: bool,
}

/// An error response: `{"status", "errors", "request_id", "timestamp", "path"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// The HTTP status code, repeated.
    #[schema(example = 404)]
    pub status: u16,
    /// Human-readable messages.
    #[schema(example = json!(["Webhook integration not configured. Set a webhook URL via the dashboard first."]))]
    pub errors: Vec<String>,
    /// A UUID naming this request; also sent as the `X-Request-Id` header.
    #[schema(example = "550e8400-e29b-41d4-a716-446655440000")]
    pub request_id: String,
    /// When the response was made: RFC 3339 UTC to the second.
    #[schema(example = "2025-01-15T10:30:00Z")]
    pub timestamp: String,
    /// The request path as received.
    #[schema(example = "/api/v2/webhooks")]
    pub path: String,
}

/// One item of the event lists: `{"event": "incoming_call_start"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventItem {
    /// The event's name.
    #[schema(example = "incoming_call_start")]
    pub event: &'static str,
}

impl EventItem {
    /// The items for a set of events, in catalog order.
    pub fn list(events: EventSet) -> Vec<EventItem> {
        events.iter().map(EventItem::from).collect()
    }
}

impl From<Event> for EventItem {
    fn from(e: Event) -> Self {
        EventItem { event: e.name() }
    }
}

/// The `WebhookSetting` object returned by enable and disable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct WebhookSetting {
    /// Your configured webhook endpoint URL.
    #[schema(example = "https://example.com/webhooks/sipsim")]
    pub webhook_url: String,
    /// Whether the webhook integration is active.
    pub enabled: bool,
    /// Currently enabled event names, in catalog order.
    #[schema(example = json!(["incoming_call_start", "incoming_call_end", "outgoing_call_end"]))]
    pub subscribed_events: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_contract() {
        let e = Envelope {
            status: 200,
            request_id: "r".into(),
            timestamp: "t".into(),
            data: WebhookSetting {
                webhook_url: "https://example.com/webhooks/sipsim".into(),
                enabled: true,
                subscribed_events: vec!["incoming_call_start"],
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"status":200,"request_id":"r","timestamp":"t","data":{"webhook_url":"https://example.com/webhooks/sipsim","enabled":true,"subscribed_events":["incoming_call_start"]}}"#
        );
        let err = ErrorEnvelope {
            status: 404,
            errors: vec!["x".into()],
            request_id: "r".into(),
            timestamp: "t".into(),
            path: "/p".into(),
        };
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"status":404,"errors":["x"],"request_id":"r","timestamp":"t","path":"/p"}"#
        );
    }
}
