//! `GET /api/v2/webhook-deliveries` and `POST /api/v2/webhook-deliveries/{id}/resend`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sipsim_core::{AccountId, Event};

use crate::helpers::{TestApp, assert_envelope_meta, assert_error, example_item};
use sipsim_testkit::receiver::Receiver;

/// An account whose integration delivers to `rx`, with `events` ingested and all delivered.
async fn delivered(app: &TestApp, rx: &Receiver, events: &[Event]) -> (AccountId, String) {
    let account = app.account().await;
    let names: Vec<&str> = Event::CATALOG.iter().map(|e| e.name()).collect();
    app.local_integration(&account, &rx.url("/h"), &names).await;
    let token = app.token_for(&account, "webhooks.read webhooks.write").await;
    let batch: Vec<Value> = events.iter().map(|e| example_item(&account, *e)).collect();
    let (status, _) = app.ingest(&json!(batch)).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, body) =
            app.get("/api/v2/webhook-deliveries?status=succeeded&limit=1000", &token).await;
        if body["data"].as_array().map(Vec::len) == Some(events.len()) {
            break;
        }
        assert!(Instant::now() < deadline, "not all delivered: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (account, token)
}

#[tokio::test]
async fn lists_newest_first_across_pages_with_filters() {
    let app = TestApp::spawn().await;
    let rx = Receiver::answering(&[]).await;
    let events =
        [Event::Sms, Event::Sms, Event::Tags, Event::Sms, Event::Tags, Event::Sms, Event::Sms];
    let (_, token) = delivered(&app, &rx, &events).await;

    let mut seen: Vec<String> = Vec::new();
    let mut path = "/api/v2/webhook-deliveries?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, headers, body) = app.get(&path, &token).await;
        assert_eq!(status, 200, "{body}");
        assert_envelope_meta(&headers, &body);
        let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["status", "request_id", "timestamp", "data", "pagination"]);
        let data = body["data"].as_array().unwrap();
        let p = &body["pagination"];
        assert_eq!(p["count"], data.len());
        assert_eq!(p["limit"], 3);
        for d in data {
            let keys: Vec<_> = d.as_object().unwrap().keys().cloned().collect();
            assert_eq!(
                keys,
                [
                    "id",
                    "message_id",
                    "event",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "last_status_code",
                    "last_error",
                    "created_at"
                ]
            );
            assert_eq!(d["status"], "succeeded");
            assert_eq!(d["attempts"], 1);
            assert_eq!(d["last_status_code"], 200);
            assert_eq!(d["next_attempt_at"], Value::Null);
            seen.push(d["id"].as_str().unwrap().to_owned());
        }
        pages += 1;
        if p["has_more"] == true {
            let token = p["page"].as_str().unwrap();
            path = format!("/api/v2/webhook-deliveries?limit=3&page={}", urlencode(token));
        } else {
            assert!(p.get("page").is_none(), "no page token on the last page");
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");
    sorted.dedup();
    assert_eq!(sorted.len(), 7);

    let count = |query: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let (status, _, body) = app
                .call(Method::GET, &format!("/api/v2/webhook-deliveries{query}"), Some(&token))
                .await;
            assert_eq!(status, 200, "{query}: {body}");
            body["data"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("?event=tags").await, 2);
    assert_eq!(count("?event=sms&status=succeeded").await, 5);
    assert_eq!(count("?status=failed").await, 0);
    assert_eq!(count("?since=2000-01-01T00:00:00Z").await, 7);
    assert_eq!(count("?since=2999-01-01T00:00:00Z").await, 0);
    assert_eq!(count("").await, 7);
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn bad_query_parameters_are_400_naming_them() {
    let (app, _, token) = TestApp::spawn_ready(&[]).await;
    let cases = [
        ("limit=0", "Query parameter 'limit' must be an integer from 1 to 1000."),
        ("limit=1001", "Query parameter 'limit' must be an integer from 1 to 1000."),
        ("limit=ten", "Query parameter 'limit' must be an integer from 1 to 1000."),
        (
            "status=done",
            "Query parameter 'status' must be one of pending, delivering, succeeded, failed, paused.",
        ),
        (
            "event=call",
            "Query parameter 'event' must be an event name from GET /api/v2/webhooks/available, or test.",
        ),
        (
            "since=yesterday",
            "Query parameter 'since' must be an RFC 3339 time such as 2025-01-15T10:30:00Z.",
        ),
        ("page=bm9wZQ==", "Query parameter 'page' is not a page token from a previous response."),
        ("page=%%%", "Query parameter 'page' is not a page token from a previous response."),
        (
            "statuss=failed",
            "Unknown query parameter 'statuss'. The list takes status, event, since, call, limit and page.",
        ),
        ("limit=5&limit=6", "Query parameter 'limit' is repeated."),
        ("call=", "Query parameter 'call' must be a pbx_id or call_id of 1 to 200 characters."),
        (
            &format!("call={}", "x".repeat(201)),
            "Query parameter 'call' must be a pbx_id or call_id of 1 to 200 characters.",
        ),
    ];
    for (query, message) in cases {
        let r = app
            .call(Method::GET, &format!("/api/v2/webhook-deliveries?{query}"), Some(&token))
            .await;
        assert_error(&r, 400, message, "/api/v2/webhook-deliveries");
    }
}

/// "Where is the end of call X": `?call=` finds a call's deliveries by its `pbx_id` or its
/// `call_id` (never both: SIPSIM gives no mapping), oldest first, page by page.
#[tokio::test]
async fn a_calls_deliveries_by_pbx_id_or_call_id_in_ingest_order() {
    let app = TestApp::spawn().await;
    let rx = Receiver::answering(&[]).await;
    // The examples: call_abc123 is an incoming call's pbx_id, call_def456 an outgoing one's,
    // 12345 the call_id of the speech, summary and rating.
    let events = [
        Event::IncomingCallStart,
        Event::OutgoingCallStart,
        Event::IncomingCallAnswer,
        Event::Sms,
        Event::Speech,
        Event::IncomingCallEnd,
        Event::OutgoingCallEnd,
        Event::Summary,
        Event::Rating,
    ];
    let (_, token) = delivered(&app, &rx, &events).await;
    let story = async |call: &str, limit: u32| {
        let mut events = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut path = format!("/api/v2/webhook-deliveries?call={call}&limit={limit}");
            if let Some(p) = &page {
                path.push_str(&format!("&page={}", urlencode(p)));
            }
            let (status, _, body) = app.get(&path, &token).await;
            assert_eq!(status, 200, "{body}");
            events.extend(body["data"].as_array().unwrap().iter().map(|d| d["event"].clone()));
            match body["pagination"]["page"].as_str() {
                Some(next) if body["pagination"]["has_more"] == true => {
                    page = Some(next.to_owned())
                }
                _ => return events,
            }
        }
    };
    let incoming = ["incoming_call_start", "incoming_call_answer", "incoming_call_end"];
    assert_eq!(story("call_abc123", 100).await, incoming);
    assert_eq!(story("call_abc123", 1).await, incoming, "pages neither skip nor repeat");
    assert_eq!(story("call_def456", 1).await, ["outgoing_call_start", "outgoing_call_end"]);
    assert_eq!(story("12345", 2).await, ["speech", "summary", "rating"]);
    assert!(story("call_abc12", 100).await.is_empty(), "exact match only");
    let (_, _, ends) = app
        .get("/api/v2/webhook-deliveries?call=call_abc123&event=incoming_call_end", &token)
        .await;
    assert_eq!(ends["pagination"]["count"], 1, "{ends}");
}

#[tokio::test]
async fn resend_sends_the_same_message_again() {
    let app = TestApp::spawn().await;
    let rx = Receiver::answering(&[]).await;
    let (_, token) = delivered(&app, &rx, &[Event::Voicemail]).await;
    let (_, _, list) = app.get("/api/v2/webhook-deliveries", &token).await;
    let original = list["data"][0].clone();
    let path = format!("/api/v2/webhook-deliveries/{}/resend", original["id"].as_str().unwrap());
    let (status, headers, body) = app.post(&path, &token).await;
    assert_eq!(status, 202, "{body}");
    assert_envelope_meta(&headers, &body);
    assert_eq!(body["status"], 202);
    assert_eq!(body["data"]["message_id"], original["message_id"]);
    assert_ne!(body["data"]["id"], original["id"]);
    assert_eq!(body["data"]["event"], "voicemail");

    let got = rx.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("x-webhook-id"), got[1].header("x-webhook-id"));
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[1].header("x-webhook-id"), original["message_id"].as_str().unwrap());
}

#[tokio::test]
async fn resend_is_confined_to_the_callers_account_and_checks_scopes() {
    let app = TestApp::spawn().await;
    let rx = Receiver::answering(&[]).await;
    let (account, token) = delivered(&app, &rx, &[Event::Sms]).await;
    let (_, _, list) = app.get("/api/v2/webhook-deliveries", &token).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v2/webhook-deliveries/{id}/resend");

    // Another account sees neither the delivery nor a way to resend it.
    let (_, other) = app.ready(&["sms"]).await;
    let (_, _, other_list) = app.get("/api/v2/webhook-deliveries", &other).await;
    assert_eq!(other_list["data"], json!([]));
    let r = app.post(&path, &other).await;
    assert_error(&r, 404, "Delivery not found.", &path);
    let bogus = "/api/v2/webhook-deliveries/not-an-id/resend";
    let r = app.post(bogus, &token).await;
    assert_error(&r, 404, "Delivery not found.", bogus);

    // Scopes: reading needs webhooks.read, resending webhooks.write.
    let read = app.client(&account, "webhooks.read").await;
    let read = app.token(&read, None).await;
    let write = app.client(&account, "webhooks.write").await;
    let write = app.token(&write, None).await;
    let r = app.post(&path, &read).await;
    assert_error(&r, 403, "Insufficient scope: webhooks.write required.", &path);
    let r = app.get("/api/v2/webhook-deliveries", &write).await;
    assert_error(
        &r,
        403,
        "Insufficient scope: webhooks.read required.",
        "/api/v2/webhook-deliveries",
    );
    for (method, p) in [(Method::GET, "/api/v2/webhook-deliveries"), (Method::POST, path.as_str())]
    {
        let r = app.call(method, p, None).await;
        assert_error(&r, 401, "Missing or invalid access token.", p);
    }
    assert_eq!(app.post(&path, &write).await.0, 202);
    // Wrong methods.
    let r = app.get(&path, &token).await;
    assert_eq!(r.0, 405);
    let r = app.delete("/api/v2/webhook-deliveries", &token).await;
    assert_eq!(r.0, 405);
}
