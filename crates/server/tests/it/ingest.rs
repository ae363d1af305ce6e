//! Ingest → store → signed delivery to a real receiver, and every way ingest refuses bad input.

use std::time::Duration;

use serde_json::{Value, json};
use sipsim_core::clock::now_secs;
use sipsim_core::payload::Payload;
use sipsim_core::signing::{verify_sipsim, verify_standard};
use sipsim_core::target::TargetPolicy;
use sipsim_core::{AccountId, Event};

use crate::helpers::{INGEST_KEY, TestApp, example_item};
use sipsim_testkit::receiver::Receiver;

async fn secret_of(app: &TestApp, account: &AccountId) -> String {
    let i = app.store.get_integration(account).await.unwrap().unwrap();
    i.signing_secret.expose().to_owned()
}

#[tokio::test]
async fn every_event_arrives_with_its_exact_body_and_verifiable_signatures() {
    let app = TestApp::spawn().await;
    let rx = Receiver::answering(&[]).await;
    let account = app.account().await;
    let all: Vec<&str> = Event::CATALOG.iter().map(|e| e.name()).collect();
    app.local_integration(&account, &rx.url("/hooks/sipsim"), &all).await;
    let secret = secret_of(&app, &account).await;

    let batch: Vec<Value> = Event::CATALOG.iter().map(|e| example_item(&account, *e)).collect();
    let (status, body) = app.ingest(&json!(batch)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], 202);
    let results = body["data"].as_array().unwrap();
    assert_eq!(results.len(), 14);
    for r in results {
        assert_eq!(r["enqueued"], true);
        assert_eq!(r["reason"], Value::Null);
        assert_eq!(r["duplicate"], false);
        assert!(r["message_id"].as_str().unwrap().starts_with("msg_"));
    }

    let got = rx.wait_for(14, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 14);
    for event in Event::CATALOG {
        let req = got
            .iter()
            .find(|r| r.header("x-webhook-event") == event.name())
            .unwrap_or_else(|| panic!("{event} not delivered"));
        assert_eq!(req.path, "/hooks/sipsim");
        assert_eq!(req.body.as_ref(), Payload::example(event).to_json().as_slice(), "{event}");
        let position = Event::CATALOG.iter().position(|e| *e == event).unwrap();
        assert_eq!(req.header("x-webhook-id"), results[position]["message_id"].as_str().unwrap());
        assert_eq!(req.header("content-type"), "application/json");
        let ts = req.header("x-webhook-timestamp");
        verify_sipsim(&secret, ts, req.header("x-webhook-signature"), &req.body).unwrap();
        verify_standard(
            &secret,
            req.header("webhook-id"),
            req.header("webhook-timestamp"),
            req.header("webhook-signature"),
            &req.body,
            now_secs(),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn only_subscribed_events_of_enabled_integrations_reach_their_own_account() {
    let app = TestApp::spawn().await;
    let rx_a = Receiver::answering(&[]).await;
    let rx_b = Receiver::answering(&[]).await;
    let a = app.account().await;
    let b = app.account().await;
    let off = app.account().await;
    let none = app.account().await;
    app.local_integration(&a, &rx_a.url("/a"), &["sms"]).await;
    app.local_integration(&b, &rx_b.url("/b"), &["tags"]).await;
    app.integration_with(&off, &rx_b.url("/off"), &["sms"], TargetPolicy::AllowInsecure, true)
        .await;

    let (status, body) = app
        .ingest(&json!([
            example_item(&a, Event::Sms),
            example_item(&a, Event::Tags),
            example_item(&off, Event::Sms),
            example_item(&none, Event::Sms),
            example_item(&b, Event::Tags),
        ]))
        .await;
    assert_eq!(status, 202, "{body}");
    let reasons: Vec<Value> =
        body["data"].as_array().unwrap().iter().map(|r| r["reason"].clone()).collect();
    assert_eq!(
        reasons,
        [
            Value::Null,
            json!("not subscribed"),
            json!("integration disabled"),
            json!("no integration"),
            Value::Null
        ]
    );
    let got_a = rx_a.wait_for(1, Duration::from_secs(5)).await;
    let got_b = rx_b.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx_a.requests().len(), 1);
    assert_eq!(got_a[0].header("x-webhook-event"), "sms");
    assert_eq!(rx_b.requests().len(), 1, "b got only its own tags, nothing of the disabled one");
    assert_eq!(got_b[0].path, "/b");
}

#[tokio::test]
async fn a_repeated_idempotency_key_is_delivered_once() {
    let app = TestApp::spawn().await;
    let rx = Receiver::answering(&[]).await;
    let account = app.account().await;
    app.local_integration(&account, &rx.url("/h"), &["voicemail"]).await;
    let mut one = example_item(&account, Event::Voicemail);
    one["idempotency_key"] = json!("vm-call_abc123");
    let (_, first) = app.ingest(&one).await;
    let (status, second) = app.ingest(&json!([one.clone(), one])).await;
    assert_eq!(status, 202);
    let id = first["data"][0]["message_id"].clone();
    for r in second["data"].as_array().unwrap() {
        assert_eq!(r["message_id"], id);
        assert_eq!(r["duplicate"], true);
        assert_eq!(r["enqueued"], false);
    }
    rx.wait_for(1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_with_the_same_id() {
    let app = TestApp::spawn().await;
    let rx = Receiver::answering(&[500, 503]).await;
    let account = app.account().await;
    app.local_integration(&account, &rx.url("/h"), &["incoming_call_end"]).await;
    let (status, _) = app.ingest(&example_item(&account, Event::IncomingCallEnd)).await;
    assert_eq!(status, 202);
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "two failures then success (schedule 0s,300ms,300ms)");
    let id = got[0].header("x-webhook-id");
    assert!(got.iter().all(|r| r.header("x-webhook-id") == id));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.requests().len(), 3, "nothing after the success");
}

#[tokio::test]
async fn invalid_batches_are_refused_whole_naming_index_and_field() {
    let app = TestApp::spawn().await;
    let rx = Receiver::answering(&[]).await;
    let account = app.account().await;
    app.local_integration(&account, &rx.url("/h"), &["sms", "incoming_call_end"]).await;
    let good = example_item(&account, Event::Sms);

    let mut wrong_type = example_item(&account, Event::IncomingCallEnd);
    wrong_type["payload"]["duration"] = json!("285");
    let mut missing = example_item(&account, Event::Sms);
    missing["payload"].as_object_mut().unwrap().remove("direction");
    let mut bad_status = example_item(&account, Event::IncomingCallEnd);
    bad_status["payload"]["status"] = json!("HUNG_UP");
    let mut extra = example_item(&account, Event::Sms);
    extra["payload"]["secret"] = json!(1);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!([good, wrong_type]),
            "[1].payload.duration: invalid type: string \"285\", expected u64",
        ),
        (json!([good, missing]), "[1].payload.direction: missing field `direction`"),
        (
            json!([good, bad_status]),
            "[1].payload.status: unknown variant `HUNG_UP`, expected one of `ANSWER`, `MISSED`, `BUSY`, `NOANSWER`",
        ),
        (
            json!([good, extra]),
            "[1].payload.secret: unknown field `secret`, expected one of `event`, `caller`, `receiver`, `message`, `time`, `direction`",
        ),
        (
            json!([good, {"account_id": account, "event": "test", "payload": {}}]),
            "[1].event: 'test' cannot be ingested: it is sent only by Send Test",
        ),
        (
            json!([good, {"account_id": account, "event": "call_started", "payload": {}}]),
            "[1].event: unknown event 'call_started'",
        ),
        (json!([good, {"account_id": account, "event": "sms"}]), "[1].payload: missing"),
        (
            json!([good, {"account_id": 5, "event": "sms", "payload": {}}]),
            "[1].account_id: must be a string",
        ),
        (
            json!([good, {"account_id": account, "event": "sms", "payload": [], "foo": 1}]),
            "[1].foo: unknown field",
        ),
        (json!([good, "nope"]), "[1]: must be an object"),
        (json!([]), "The batch is empty: send one item or an array of 1 to 1,000."),
        (json!("x"), "The body must be an object or an array of objects."),
    ];
    for (body, expected) in cases {
        let (status, answer) = app.ingest(&body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["errors"].as_array().unwrap().iter().any(|e| e == expected),
            "expected {expected:?} in {answer}"
        );
        assert_eq!(answer["path"], "/internal/v1/events");
    }
    let (status, answer) = app.ingest_with(Some(INGEST_KEY), b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(answer["errors"][0].as_str().unwrap().starts_with("Malformed JSON"));

    let too_many: Vec<Value> = (0..1001).map(|_| example_item(&account, Event::Sms)).collect();
    let (status, answer) = app.ingest(&json!(too_many)).await;
    assert_eq!(status, 400);
    assert_eq!(answer["errors"][0], "The batch has 1001 items; the limit is 1,000.");

    // Unknown account: 404 naming the item, and the valid item before it is not stored either.
    let ghost = AccountId::generate();
    let (status, answer) = app
        .ingest(&json!([example_item(&account, Event::Sms), example_item(&ghost, Event::Sms)]))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        answer["errors"],
        json!([format!("[1].account_id: account {ghost} does not exist")])
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.requests().is_empty(), "nothing of a refused batch was delivered");
}

#[tokio::test]
async fn the_ingest_key_is_required_and_bodies_are_limited_to_4_mib() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let body = serde_json::to_vec(&example_item(&account, Event::Sms)).unwrap();
    for key in [None, Some("wrong-key-wrong-key"), Some("")] {
        let (status, answer) = app.ingest_with(key, body.clone()).await;
        assert_eq!(status, 401);
        assert_eq!(answer["errors"], json!(["Missing or invalid ingest key."]));
    }
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let (status, answer) = app.ingest_with(Some(INGEST_KEY), big).await;
    assert_eq!(status, 413);
    assert_eq!(answer["errors"], json!(["Request body too large (the limit is 4 MiB)."]));
    // A large but allowed batch is fine: 1,000 items is far below 4 MiB.
    let batch: Vec<Value> = (0..1000).map(|_| example_item(&account, Event::Sms)).collect();
    let (status, answer) = app.ingest(&json!(batch)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["data"].as_array().unwrap().len(), 1000);
}

/// Per-call ordering: the first event of a call fails twice; the second event of that call waits for
/// it; an unrelated call does not wait.
#[tokio::test]
async fn a_calls_second_event_waits_for_its_first_and_other_calls_do_not() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use axum::http::StatusCode;

    let seen: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::default();
    let log = seen.clone();
    let app_rx = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let log = log.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let event = v["event"].as_str().unwrap().to_owned();
            let call = v["pbx_id"].as_str().unwrap().to_owned();
            let mut log = log.lock().unwrap();
            let earlier = log.iter().filter(|(e, c, _)| *e == event && *c == call).count();
            log.push((event.clone(), call.clone(), Instant::now()));
            if call == "call_a" && event == "incoming_call_start" && earlier < 2 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/h", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app_rx).await.unwrap() });

    let app = TestApp::spawn().await;
    let account = app.account().await;
    app.local_integration(&account, &url, &["incoming_call_start", "incoming_call_answer"]).await;
    let call = |event: Event, pbx_id: &str| {
        let mut i = example_item(&account, event);
        i["payload"]["pbx_id"] = json!(pbx_id);
        i
    };
    let (status, _) = app
        .ingest(&json!([
            call(Event::IncomingCallStart, "call_a"),
            call(Event::IncomingCallAnswer, "call_a"),
            call(Event::IncomingCallStart, "call_b"),
        ]))
        .await;
    assert_eq!(status, 202);

    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = seen.lock().unwrap().clone();
    let order: Vec<String> = log.iter().map(|(e, c, _)| format!("{c}/{e}")).collect();
    assert_eq!(log.len(), 5, "{order:?}");
    let at = |call: &str, event: &str, nth: usize| {
        log.iter()
            .filter(|(e, c, _)| c == call && e == event)
            .nth(nth)
            .unwrap_or_else(|| panic!("no {call}/{event} #{nth} in {order:?}"))
            .2
    };
    let a_start_ok = at("call_a", "incoming_call_start", 2);
    let a_answer = at("call_a", "incoming_call_answer", 0);
    let b_start = at("call_b", "incoming_call_start", 0);
    assert!(a_answer > a_start_ok, "the answer waited for the start's success: {order:?}");
    assert!(
        b_start < at("call_a", "incoming_call_start", 1),
        "the unrelated call went out before call_a's first retry: {order:?}"
    );
}
