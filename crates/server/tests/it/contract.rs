//! Every request/response example of the contract (`managing-webhooks-api.txt`), checked field by field.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Fetch, TestApp, assert_envelope_meta, assert_error};

const CATALOG: [&str; 14] = [
    "incoming_call_start",
    "incoming_call_start_chain_member_call",
    "incoming_call_end_chain_member_call",
    "incoming_call_answer",
    "incoming_call_end",
    "outgoing_call_start",
    "outgoing_call_answer",
    "outgoing_call_end",
    "voicemail",
    "tags",
    "speech",
    "summary",
    "sms",
    "rating",
];

fn items(events: &[&str]) -> serde_json::Value {
    json!(events.iter().map(|e| json!({ "event": e })).collect::<Vec<_>>())
}

fn assert_ok_keys(body: &serde_json::Value) {
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["status", "request_id", "timestamp", "data"], "envelope keys in order");
}

#[tokio::test]
async fn list_available_events() {
    let app = TestApp::spawn().await;
    // Works before the integration exists.
    let account = app.account().await;
    let token = app.token_for(&account, "webhooks.read").await;
    let (status, headers, body) = app.get("/api/v2/webhooks/available", &token).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "application/json", "JSON content type");
    assert_eq!(body["status"], 200);
    assert_eq!(body["data"], items(&CATALOG));
    assert_ok_keys(&body);
    assert_envelope_meta(&headers, &body);
}

#[tokio::test]
async fn list_enabled_events() {
    let (app, _, token) = TestApp::spawn_ready(&["incoming_call_end", "incoming_call_start"]).await;
    let (status, headers, body) = app.get("/api/v2/webhooks", &token).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], 200);
    assert_eq!(body["data"], items(&["incoming_call_start", "incoming_call_end"]));
    assert_ok_keys(&body);
    assert_envelope_meta(&headers, &body);
}

#[tokio::test]
async fn enable_an_event_returns_the_full_setting_and_is_idempotent() {
    let (app, _, token) = TestApp::spawn_ready(&["incoming_call_start", "incoming_call_end"]).await;
    let expected = json!({
        "webhook_url": "https://example.com/webhooks/sipsim",
        "enabled": true,
        "subscribed_events": ["incoming_call_start", "incoming_call_end", "outgoing_call_end"]
    });
    for _ in 0..2 {
        let (status, headers, body) = app.post("/api/v2/webhooks/outgoing_call_end", &token).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], 200);
        assert_eq!(body["data"], expected);
        assert_ok_keys(&body);
        assert_envelope_meta(&headers, &body);
    }
    let (_, _, list) = app.get("/api/v2/webhooks", &token).await;
    assert_eq!(
        list["data"],
        items(&["incoming_call_start", "incoming_call_end", "outgoing_call_end"])
    );
}

#[tokio::test]
async fn disable_an_event_returns_the_full_setting_and_is_idempotent() {
    let (app, _, token) =
        TestApp::spawn_ready(&["incoming_call_start", "incoming_call_end", "outgoing_call_end"])
            .await;
    for _ in 0..2 {
        let (status, headers, body) =
            app.delete("/api/v2/webhooks/incoming_call_start", &token).await;
        assert_eq!(status, 200);
        assert_eq!(
            body["data"],
            json!({
                "webhook_url": "https://example.com/webhooks/sipsim",
                "enabled": true,
                "subscribed_events": ["incoming_call_end", "outgoing_call_end"]
            })
        );
        assert_envelope_meta(&headers, &body);
    }
}

#[tokio::test]
async fn integration_not_configured_is_the_contract_404() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let token = app.token_for(&account, "webhooks.read webhooks.write").await;
    let message = "Webhook integration not configured. Set a webhook URL via the dashboard first.";
    let r = app.get("/api/v2/webhooks", &token).await;
    assert_error(&r, 404, message, "/api/v2/webhooks");
    let r = app.post("/api/v2/webhooks/sms", &token).await;
    assert_error(&r, 404, message, "/api/v2/webhooks/sms");
    let r = app.delete("/api/v2/webhooks/sms", &token).await;
    assert_error(&r, 404, message, "/api/v2/webhooks/sms");
}

#[tokio::test]
async fn unknown_event_is_the_contract_400() {
    let (app, _, token) = TestApp::spawn_ready(&[]).await;
    for method in [Method::POST, Method::DELETE] {
        let r = app.call(method, "/api/v2/webhooks/invalid_event", Some(&token)).await;
        assert_error(
            &r,
            400,
            "Unknown event 'invalid_event'. Use GET /api/v2/webhooks/available for the list of valid events.",
            "/api/v2/webhooks/invalid_event",
        );
    }
}

#[tokio::test]
async fn unknown_event_beats_missing_integration() {
    // Precedence: 400 unknown event comes before 404 not configured.
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let token = app.token_for(&account, "webhooks.write").await;
    let r = app.post("/api/v2/webhooks/test", &token).await;
    assert_error(
        &r,
        400,
        "Unknown event 'test'. Use GET /api/v2/webhooks/available for the list of valid events.",
        "/api/v2/webhooks/test",
    );
}

/// The contract's Python bulk-enable loop, step for step.
#[tokio::test]
async fn bulk_enable_loop_enables_all_fourteen_in_catalog_order() {
    let (app, _, token) = TestApp::spawn_ready(&["sms"]).await;
    let available = app
        .http
        .get(app.url("/api/v2/webhooks/available"))
        .header("Authorization", format!("Bearer {token}"))
        .fetch_json::<serde_json::Value>()
        .await["data"]
        .clone();
    for event in available.as_array().unwrap() {
        let name = event["event"].as_str().unwrap();
        let resp = app
            .http
            .post(app.url(&format!("/api/v2/webhooks/{name}")))
            .header("Authorization", format!("Bearer {token}"))
            .fetch()
            .await;
        assert_eq!(resp.status(), 200, "Enabled: {name}");
    }
    let (_, _, list) = app.get("/api/v2/webhooks", &token).await;
    assert_eq!(list["data"], items(&CATALOG));
}
