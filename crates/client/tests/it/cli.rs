//! The `sipsim` binary run as a customer runs it, against a live server: every subcommand, its
//! output and its exit code.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sipsim_client::verify::{Verifier, sipsim_signature, standard_signature};
use sipsim_core::Event;
use sipsim_core::secret::SigningSecret;
use sipsim_core::store::IntegrationUpdate;
use sipsim_core::target::{TargetPolicy, WebhookUrl};

use crate::support::{Credentials, Live};

/// `sipsim` with a clean environment: only what the test gives.
fn sipsim(credentials: Option<&Credentials>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipsim"));
    c.args(args)
        .env_remove("SIPSIM_API_URL")
        .env_remove("SIPSIM_CLIENT_ID")
        .env_remove("SIPSIM_CLIENT_SECRET")
        .env_remove("SIPSIM_ACCESS_TOKEN")
        .env_remove("SIPSIM_WEBHOOK_SECRET")
        .env("NO_COLOR", "1");
    if let Some(k) = credentials {
        c.env("SIPSIM_API_URL", &k.api_url)
            .env("SIPSIM_CLIENT_ID", &k.id)
            .env("SIPSIM_CLIENT_SECRET", &k.secret);
    }
    c
}

/// Runs to completion off the async runtime's threads.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The event names of a table's rows (the first column, header skipped).
fn first_column(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn assert_exit(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(o), stderr(o));
    let all = format!("{}{}", stdout(o), stderr(o));
    assert!(all.contains(needle), "{needle:?} not in: {all}");
}

fn catalog() -> Vec<String> {
    Event::CATALOG.iter().map(|e| e.name().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_commands_do_what_the_contract_does() {
    let live = Live::start().await;
    let (account, k) = live.customer("webhooks.read webhooks.write").await;
    let k = Some(&k);

    // No integration yet: named, exit 5.
    let o = run(sipsim(k, &["webhooks", "list"])).await;
    assert_exit(
        &o,
        5,
        "Webhook integration not configured. Set a webhook URL via the dashboard first.",
    );

    live.integration(
        &account,
        "https://example.com/webhooks/sipsim",
        &["incoming_call_start", "incoming_call_end"],
    )
    .await;

    let o = run(sipsim(k, &["webhooks", "available"])).await;
    assert_exit(&o, 0, "Triggered when an incoming call is initiated");
    assert_eq!(first_column(&o), catalog());
    let o = run(sipsim(k, &["webhooks", "available", "--json"])).await;
    let items: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<String> =
        items.as_array().unwrap().iter().map(|i| i["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, catalog());

    let o = run(sipsim(k, &["webhooks", "list"])).await;
    assert_exit(&o, 0, "EVENT");
    assert_eq!(first_column(&o), ["incoming_call_start", "incoming_call_end"]);

    // A typo changes nothing, and the nearest name is suggested.
    let o =
        run(sipsim(k, &["webhooks", "enable", "outgoing_call_end", "incoming_call_strat"])).await;
    assert_exit(&o, 2, "unknown event 'incoming_call_strat'. Did you mean 'incoming_call_start'?");
    let o = run(sipsim(k, &["webhooks", "list", "--json"])).await;
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).unwrap().as_array().unwrap().len(), 2);

    let o = run(sipsim(k, &["webhooks", "enable", "--all"])).await;
    assert_exit(
        &o,
        0,
        "12 event(s) enabled; 14 of 14 now enabled, delivered to https://example.com/webhooks/sipsim.",
    );
    assert!(stdout(&o).contains("= incoming_call_start (already enabled)"));
    assert!(stdout(&o).contains("+ rating"));
    let o = run(sipsim(k, &["webhooks", "list"])).await;
    assert_eq!(first_column(&o).len(), 14);
    assert_eq!(first_column(&o), catalog());

    let o = run(sipsim(k, &["webhooks", "disable", "sms", "rating"])).await;
    assert_exit(&o, 0, "2 event(s) disabled; 12 of 14 now enabled");
    let integration = live.store.get_integration(&account).await.unwrap().unwrap();
    assert!(!integration.events.contains(Event::Sms));
    assert!(!integration.events.contains(Event::Rating));
    assert!(integration.events.contains(Event::Summary));

    // --json gives the contract's WebhookSetting.
    let o = run(sipsim(k, &["webhooks", "enable", "sms", "--json"])).await;
    assert_exit(&o, 0, "");
    let setting: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(setting["webhook_url"], "https://example.com/webhooks/sipsim");
    assert_eq!(setting["enabled"], true);
    assert_eq!(setting["subscribed_events"].as_array().unwrap().len(), 13);

    let o = run(sipsim(k, &["webhooks", "disable", "--all"])).await;
    assert_exit(&o, 0, "13 event(s) disabled; 0 of 14 now enabled");
    let o = run(sipsim(k, &["webhooks", "list"])).await;
    assert_exit(&o, 0, "No events enabled.");
    assert!(live.store.get_integration(&account).await.unwrap().unwrap().events.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_names_the_problem_with_its_exit_code() {
    let live = Live::start().await;
    let (account, good) = live.customer("webhooks.read webhooks.write").await;
    live.integration(&account, "https://example.com/hook", &["sms"]).await;

    let wrong = Credentials {
        secret: "scs_wrong".into(),
        ..live.credentials(&account, "webhooks.read").await
    };
    let o = run(sipsim(Some(&wrong), &["webhooks", "list"])).await;
    assert_exit(&o, 3, "authentication failed: the client id or secret is wrong");

    let o = run(sipsim(None, &["webhooks", "list"])).await;
    assert_exit(&o, 3, "no credentials: set SIPSIM_CLIENT_ID and SIPSIM_CLIENT_SECRET");

    let mut c = sipsim(None, &["webhooks", "list"]);
    c.env("SIPSIM_API_URL", &live.url).env("SIPSIM_ACCESS_TOKEN", "not-a-token");
    assert_exit(&run(c).await, 3, "Missing or invalid access token.");

    // A token obtained elsewhere works as is.
    let token: Value = reqwest_token(&good).await;
    let mut c = sipsim(None, &["webhooks", "list", "--json"]);
    c.env("SIPSIM_API_URL", &live.url)
        .env("SIPSIM_ACCESS_TOKEN", token["access_token"].as_str().unwrap());
    let o = run(c).await;
    assert_exit(&o, 0, "sms");

    let read_only = live.credentials(&account, "webhooks.read").await;
    let o = run(sipsim(Some(&read_only), &["webhooks", "enable", "tags"])).await;
    assert_exit(&o, 4, "permission denied: Insufficient scope: webhooks.write required.");
    // With --json the error is one object on stdout, with the request id to quote.
    let o = run(sipsim(Some(&read_only), &["webhooks", "enable", "tags", "--json"])).await;
    assert_eq!(o.status.code(), Some(4));
    let error: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(error["status"], 403);
    assert_eq!(error["exit_code"], 4);
    assert!(error["request_id"].as_str().unwrap().len() >= 32);
    assert!(error["error"].as_str().unwrap().contains("webhooks.write required"));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = Credentials {
        api_url: format!("http://{}", closed.local_addr().unwrap()),
        ..live.credentials(&account, "webhooks.read").await
    };
    drop(closed);
    let o = run(sipsim(Some(&dead), &["webhooks", "list"])).await;
    assert_exit(&o, 1, "cannot reach");

    let o = run(sipsim(Some(&good), &["webhooks", "frobnicate"])).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

async fn reqwest_token(k: &Credentials) -> Value {
    sipsim_client::install_crypto_provider();
    reqwest::Client::new()
        .post(format!("{}/oauth/token", k.api_url))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", k.id.as_str()),
            ("client_secret", k.secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_listed_and_resent() {
    let live = Live::start().await;
    let (account, k) = live.customer("webhooks.read webhooks.write").await;
    let k = Some(&k);
    // Nothing listens on this port: the one attempt fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    live.integration(&account, &url, &["sms", "incoming_call_start", "incoming_call_end"]).await;
    let example: Value =
        serde_json::from_str(sipsim_core::payload::example_json(Event::Sms)).unwrap();
    live.ingest(&account, &[("sms", example.clone()), ("sms", example)]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while live.deliveries(&account).await.iter().any(|d| d.status.as_str() != "failed") {
        assert!(Instant::now() < deadline, "deliveries did not fail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let o = run(sipsim(k, &["deliveries", "list", "--status", "failed"])).await;
    assert_exit(&o, 0, "LAST RESULT");
    let ids = first_column(&o);
    assert_eq!(ids.len(), 2, "{}", stdout(&o));
    assert!(stdout(&o).contains("failed"));

    let o = run(sipsim(k, &["deliveries", "list", "--limit", "1", "--json"])).await;
    let page: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["pagination"]["has_more"], true);
    let token = page["pagination"]["page"].as_str().unwrap();
    let o =
        run(sipsim(k, &["deliveries", "list", "--limit", "1", "--page", token, "--json"])).await;
    let second: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_ne!(second["data"][0]["id"], page["data"][0]["id"]);
    assert_eq!(second["pagination"]["has_more"], false);

    let o = run(sipsim(k, &["deliveries", "resend", &ids[0]])).await;
    assert_exit(&o, 0, &format!("resend of {}", ids[0]));
    assert_eq!(live.deliveries(&account).await.len(), 3);

    let o = run(sipsim(k, &["deliveries", "resend", "dlv_00000000000000000000000000"])).await;
    assert_exit(&o, 6, "Delivery not found.");
    let o = run(sipsim(k, &["deliveries", "list", "--status", "lost"])).await;
    assert_exit(&o, 2, "Query parameter 'status' must be one of");

    // One call's deliveries by its pbx_id, oldest first; the SMS are no call's.
    let call = |event: Event| {
        let payload = serde_json::from_str(sipsim_core::payload::example_json(event)).unwrap();
        (event.name(), payload)
    };
    live.ingest(&account, &[call(Event::IncomingCallStart), call(Event::IncomingCallEnd)]).await;
    let o = run(sipsim(k, &["deliveries", "list", "--call", "call_abc123", "--json"])).await;
    let page: Value = serde_json::from_slice(&o.stdout).unwrap();
    let events: Vec<&str> =
        page["data"].as_array().unwrap().iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["incoming_call_start", "incoming_call_end"], "{page}");
    let o = run(sipsim(k, &["deliveries", "list", "--call", "call_xyz"])).await;
    assert_exit(&o, 0, "No deliveries.");
}

/// A running `sipsim listen`, its stdout read line by line.
struct Listening {
    child: Child,
    url: String,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Listening {
    fn start(args: &[&str]) -> Listening {
        let mut all = vec!["listen", "--port", "0"];
        all.extend_from_slice(args);
        let mut child =
            sipsim(None, &all).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut l = Listening { child, url: String::new(), lines, seen: Vec::new() };
        let first = l.wait_for("Listening on ");
        l.url = first.split_whitespace().nth(2).unwrap().trim_end_matches('/').to_owned();
        l
    }

    /// For each needle, the first line containing it, in whatever order they arrive.
    fn wait_for_all(&mut self, needles: &[&str]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; needles.len()];
        let deadline = Instant::now() + Duration::from_secs(20);
        while found.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    for (needle, slot) in needles.iter().zip(found.iter_mut()) {
                        if slot.is_none() && line.contains(needle) {
                            *slot = Some(line.clone());
                        }
                    }
                }
                Err(_) => panic!("not all of {needles:?} in:\n{}", self.seen.join("\n")),
            }
        }
        found.into_iter().flatten().collect()
    }

    /// The first line (from now on) containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no {needle:?} in:\n{}", self.seen.join("\n")),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_verifies_live_deliveries_and_rejects_forged_ones() {
    let live = Live::start().await;
    let (account, _) = live.customer("webhooks.read").await;
    // The secret only exists once the integration does; point it at the receiver after.
    let secret = live
        .integration(
            &account,
            "http://127.0.0.1:9/placeholder",
            &["incoming_call_start", "summary"],
        )
        .await;
    let mut listen = tokio::task::spawn_blocking({
        let secret = secret.clone();
        move || Listening::start(&["--secret", &secret, "-v"])
    })
    .await
    .unwrap();
    live.store
        .put_integration(
            &account,
            IntegrationUpdate {
                webhook_url: WebhookUrl::parse(
                    &format!("{}/webhooks/sipsim", listen.url),
                    TargetPolicy::AllowInsecure,
                )
                .unwrap(),
                disabled: false,
                events: None,
                new_signing_secret: SigningSecret::generate(),
            },
        )
        .await
        .unwrap();
    let start: Value =
        serde_json::from_str(sipsim_core::payload::example_json(Event::IncomingCallStart)).unwrap();
    let summary: Value =
        serde_json::from_str(sipsim_core::payload::example_json(Event::Summary)).unwrap();
    live.ingest(&account, &[("incoming_call_start", start), ("summary", summary)]).await;

    let listen = tokio::task::spawn_blocking(move || {
        // The two events belong to different calls, so either may arrive first.
        let lines = listen.wait_for_all(&[" incoming_call_start ", " summary "]);
        assert!(lines[0].contains("✓ 200"), "{}", lines[0]);
        assert!(lines[0].contains("call_abc123  +33612345678 → +33198765432"), "{}", lines[0]);
        assert!(lines[1].contains("✓ 200") && lines[1].contains("call_id 12345"), "{}", lines[1]);
        // -v prints the bodies, after each event's line.
        let body = "\"pbx_id\": \"call_abc123\"";
        if !listen.seen.iter().any(|l| l.contains(body)) {
            listen.wait_for(body);
        }
        listen
    })
    .await
    .unwrap();
    // The server recorded both as delivered with the listener's 200.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = live.deliveries(&account).await;
        if d.len() == 2 && d.iter().all(|d| d.status.as_str() == "succeeded") {
            assert!(d.iter().all(|d| d.last_status_code == Some(200)));
            break;
        }
        assert!(Instant::now() < deadline, "{d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A forged request (fresh timestamp, wrong key) is refused and said so.
    let body = br#"{"event":"sms","caller":"+33612345678","receiver":"+33198765432","message":"pay now","time":"2025-01-15T11:00:00Z","direction":"inbound"}"#;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let forged = sipsim_signature("whsec_Zm9yZ2VkLXNlY3JldC1mb3JnZWQtc2VjcmV0", now, body);
    sipsim_client::install_crypto_provider();
    let http = reqwest::Client::new();
    // What the listener answers a body signed `signature`, sent under message id `id`.
    let answer = async |signature: String, id: &str| {
        let sent = http
            .post(format!("{}/webhooks/sipsim", listen.url))
            .header("X-Webhook-Signature", signature)
            .header("X-Webhook-Timestamp", now.to_string())
            .header("X-Webhook-Event", "sms")
            .header("X-Webhook-Id", id)
            .body(&body[..])
            .send();
        sent.await.unwrap().status().as_u16()
    };
    assert_eq!(answer(forged, "msg_forged").await, 401);
    // The same body correctly signed passes: the refusal was the signature's.
    assert_eq!(answer(sipsim_signature(&secret, now, body), "msg_genuine").await, 200);
    tokio::task::spawn_blocking(move || {
        let mut listen = listen;
        let line = listen.wait_for("msg_forged");
        assert!(
            line.contains("✗ 401") && line.contains("rejected: no signature matches"),
            "{line}"
        );
        let line = listen.wait_for("msg_genuine");
        assert!(line.contains("✓ 200"), "{line}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_forwards_verified_requests_and_relays_the_answer() {
    // The customer's application: checks the signature itself and answers 202.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let got: Arc<Mutex<Vec<bool>>> = Arc::default();
    let app = {
        let got = got.clone();
        axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let got = got.clone();
                async move {
                    let ok = Verifier::new(secret).verify(&headers, &body).is_ok();
                    got.lock().unwrap().push(ok);
                    (axum::http::StatusCode::ACCEPTED, "queued by the app")
                }
            },
        )
    };
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}/hooks", socket.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(socket, app).await.unwrap() });

    let listen = tokio::task::spawn_blocking({
        let app_url = app_url.clone();
        move || Listening::start(&["--secret", secret, "--forward-to", &app_url])
    })
    .await
    .unwrap();
    let body = br#"{"id":789,"summary":"Pricing requested.","call_id":12345}"#;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let http = {
        sipsim_client::install_crypto_provider();
        reqwest::Client::new()
    };
    let answer = http
        .post(format!("{}/", listen.url))
        .header("Content-Type", "application/json")
        .header("X-Webhook-Signature", sipsim_signature(secret, now, body))
        .header("X-Webhook-Timestamp", now.to_string())
        .header("X-Webhook-Event", "summary")
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", standard_signature(&[secret], "msg_1", now, body))
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    assert_eq!(answer.text().await.unwrap(), "queued by the app");
    // Forged: refused by the listener, never forwarded.
    let answer = http
        .post(format!("{}/", listen.url))
        .header("X-Webhook-Signature", "00".repeat(32))
        .header("X-Webhook-Timestamp", now.to_string())
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert_eq!(*got.lock().unwrap(), [true], "the app verified what it got");
    drop(listen);
}

#[tokio::test]
async fn verify_checks_a_signature_offline() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"event":"test","message":"hello"}"#;
    let ts = 1_736_937_000;
    let verify = |signature: String, body: &[u8], extra: &[&str]| {
        let ts = ts.to_string();
        let mut args =
            vec!["verify", "--secret", secret, "--timestamp", &ts, "--signature", &signature];
        args.extend_from_slice(extra);
        let mut child = sipsim(None, &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body).unwrap();
        child.wait_with_output().unwrap()
    };
    let good = sipsim_signature(secret, ts, body);
    assert_exit(&verify(good.clone(), body, &[]), 0, "valid: the X-Webhook-Signature matches");
    assert_exit(
        &verify(good.clone(), b"{\"event\":\"test\"}", &[]),
        1,
        "invalid: the X-Webhook-Signature does not match",
    );
    assert_exit(&verify("xyz".into(), body, &[]), 2, "malformed input");
    let o = verify(good, b"tampered", &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let verdict: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(verdict["valid"], false);

    let v1 = standard_signature(&[secret], "msg_1", ts, body);
    assert_exit(
        &verify(v1.clone(), body, &["--id", "msg_1"]),
        0,
        "valid: the webhook-signature matches",
    );
    assert_exit(&verify(v1.clone(), body, &["--id", "msg_2"]), 1, "invalid");
    assert_exit(&verify(v1, body, &[]), 2, "needs --id");
}

/// `sipsim webhooks schema EVENT` prints, without credentials, the schema the server serves for
/// that event under `webhooks` (its `$ref`s under `$defs`), `test` included; a typo is a usage error
/// with a suggestion.
#[tokio::test]
async fn webhooks_schema_prints_the_served_payload_schema() {
    let served = sipsim_server::app::openapi();
    for event in Event::CATALOG.into_iter().chain([Event::Test]) {
        let o = run(sipsim(None, &["webhooks", "schema", event.name()])).await;
        assert_exit(&o, 0, "$schema");
        let printed: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(printed["title"], event.name());
        let pointer =
            format!("/webhooks/{}/post/requestBody/content/application~1json/schema", event.name());
        let schema = &served.pointer(&pointer).unwrap();
        assert_eq!(printed["required"], schema["required"], "{event}");
        let names =
            |s: &Value| s["properties"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&printed), names(schema), "{event}");
        if printed["properties"].get("event").is_some() {
            assert_eq!(printed["properties"]["event"]["const"], event.name());
        }
    }
    let o = run(sipsim(None, &["webhooks", "schema", "incoming_call_strat"])).await;
    assert_exit(&o, 2, "Did you mean 'incoming_call_start'?");
}
