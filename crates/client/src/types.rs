//! What the API answers, as the client reads it. Unknown fields are ignored, so a newer server does
//! not break an older client.

use serde::{Deserialize, Serialize};

/// The `WebhookSetting` object: the integration after an enable or disable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSetting {
    /// The configured webhook endpoint URL.
    pub webhook_url: String,
    /// Whether the webhook integration is active.
    pub enabled: bool,
    /// The enabled event names, in catalog order.
    pub subscribed_events: Vec<String>,
}

/// One delivery of one message to the account's webhook URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The delivery's id (`dlv_…`).
    pub id: String,
    /// The message's id: the `X-Webhook-Id` of every attempt, and of resends.
    pub message_id: String,
    /// The event name.
    pub event: String,
    /// `pending`, `delivering`, `succeeded`, `failed` or `paused`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only), RFC 3339.
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    /// The HTTP status of the last answer, if one came.
    #[serde(default)]
    pub last_status_code: Option<u16>,
    /// What went wrong on the last attempt, if it did.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the delivery was created, RFC 3339.
    pub created_at: String,
}

/// SIPSIM's keyset pagination object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// Items in this page.
    pub count: usize,
    /// The most items a page holds.
    pub limit: u32,
    /// The token of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Whether more pages exist.
    pub has_more: bool,
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPage {
    /// The deliveries.
    pub data: Vec<Delivery>,
    /// Where the next page is.
    pub pagination: Pagination,
}

/// An access token from `POST /oauth/token`.
#[derive(Clone, Deserialize)]
pub struct Token {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires (7200).
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    #[serde(default)]
    pub scope: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// `{"data": …}` of a success envelope (the other fields are not needed).
#[derive(Deserialize)]
pub(crate) struct Data<T> {
    pub data: T,
}

/// `{"event": "…"}`.
#[derive(Deserialize)]
pub(crate) struct EventItem {
    pub event: String,
}
