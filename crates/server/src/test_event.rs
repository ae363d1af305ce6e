//! *Send Test*: one immediate, signed attempt with the documented `test` payload. Logged in the
//! attempt log, never queued or retried, and independent of subscriptions. The dashboard and
//! `sipsimd integration test` share it.

use serde::Serialize;
use sipsim_core::clock::{now_ms, rfc3339_seconds_from_ms};
use sipsim_core::payload::{Payload, TestEvent, Timestamp};
use sipsim_core::{AccountId, MessageId, Store};
use sipsim_delivery::sender::Outgoing;
use sipsim_delivery::{Sender, Verdict};

/// What *Send Test* reports.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// The documented result line: `Success (HTTP 200)`, `Error (HTTP 503)` or `Connection failed: …`.
    pub result: String,
    /// Whether the endpoint answered 2xx.
    pub ok: bool,
    /// The HTTP status, if one came back.
    pub status_code: Option<u16>,
    /// The test message's id (`X-Webhook-Id`).
    pub message_id: String,
    /// Its delivery in the attempt log.
    pub delivery_id: String,
}

/// Why a test could not be made at all.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The account has no integration to test.
    #[error("account {0} has no webhook integration")]
    NoIntegration(AccountId),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] sipsim_core::StoreError),
}

/// Sends the test event to `account`'s webhook URL now and logs the attempt.
pub async fn send_test(
    store: &dyn Store,
    sender: &Sender,
    account: &AccountId,
) -> Result<TestResult, TestError> {
    let integration = store
        .get_integration(account)
        .await?
        .ok_or_else(|| TestError::NoIntegration(account.clone()))?;
    // The current time to the second is always a valid RFC 3339 timestamp.
    let sent_at = Timestamp::parse(&rfc3339_seconds_from_ms(now_ms()))
        .map_err(sipsim_core::StoreError::Corrupt)?;
    let body = Payload::Test(TestEvent::at(sent_at)).to_json();
    let message_id = MessageId::generate();
    let (record, verdict) = sender
        .send(Outgoing {
            url: integration.webhook_url.as_str(),
            message_id: message_id.as_str(),
            event: "test",
            body: &body,
            secret: integration.signing_secret.expose(),
            previous_secret: integration
                .previous_signing_secret
                .as_ref()
                .filter(|(_, until)| *until > now_ms())
                .map(|(s, _)| s.expose()),
        })
        .await;
    let ok = verdict == Verdict::Success;
    let result = match (ok, record.status_code, &record.error) {
        (true, Some(code), _) => format!("Success (HTTP {code})"),
        (false, Some(code), _) => format!("Error (HTTP {code})"),
        (_, None, error) => {
            let why = error.as_deref().unwrap_or("no response");
            let why = why.strip_prefix("connection failed: ").unwrap_or(why);
            format!("Connection failed: {why}")
        }
    };
    let delivery_id = store.record_test_attempt(account, &message_id, &body, &record, ok).await?;
    Ok(TestResult {
        result,
        ok,
        status_code: record.status_code,
        message_id: message_id.to_string(),
        delivery_id: delivery_id.to_string(),
    })
}
