//! Who may call what: the scope matrix, every kind of bad token, deleted clients and tenant isolation.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::json;
use sipsim_core::clock::now_secs;
use sipsim_core::{AccountId, ScopeSet};
use sipsim_server::auth::jwt::{AccessClaims, JwtKey};

use crate::helpers::{Fetch, JWT_SECRET, TestApp, assert_error};

const UNAUTHORIZED: &str = "Missing or invalid access token.";

fn routes() -> [(Method, &'static str, &'static str); 4] {
    [
        (Method::GET, "/api/v2/webhooks/available", "webhooks.read"),
        (Method::GET, "/api/v2/webhooks", "webhooks.read"),
        (Method::POST, "/api/v2/webhooks/sms", "webhooks.write"),
        (Method::DELETE, "/api/v2/webhooks/sms", "webhooks.write"),
    ]
}

#[tokio::test]
async fn scope_matrix() {
    let (app, account, _) = TestApp::spawn_ready(&["sms"]).await;
    let read = app.client(&account, "webhooks.read").await;
    let write = app.client(&account, "webhooks.write").await;
    let both = app.client(&account, "webhooks.read webhooks.write").await;
    let tokens = [
        ("read", app.token(&read, None).await, ["webhooks.read"].as_slice()),
        ("write", app.token(&write, None).await, ["webhooks.write"].as_slice()),
        ("both", app.token(&both, None).await, ["webhooks.read", "webhooks.write"].as_slice()),
        // A client with both scopes that asked only for one gets only that one.
        (
            "both-asked-read",
            app.token(&both, Some("webhooks.read")).await,
            ["webhooks.read"].as_slice(),
        ),
    ];
    for (name, token, granted) in &tokens {
        for (method, path, needed) in routes() {
            let r = app.call(method.clone(), path, Some(token)).await;
            if granted.contains(&needed) {
                assert_eq!(r.0, 200, "{name} token on {method} {path}: {}", r.2);
            } else {
                assert_error(&r, 403, &format!("Insufficient scope: {needed} required."), path);
                assert_eq!(
                    r.1.get("www-authenticate").unwrap(),
                    &format!(r#"Bearer error="insufficient_scope", scope="{needed}""#),
                );
            }
        }
    }
}

fn mint(claims: &AccessClaims) -> String {
    JwtKey::new(JWT_SECRET.as_bytes()).issue(claims)
}

#[tokio::test]
async fn bad_tokens_are_401_on_every_route() {
    let (app, account, good) = TestApp::spawn_ready(&["sms"]).await;
    let client = app.client(&account, "webhooks.read webhooks.write").await;
    let now = now_secs();
    let claims = |iat: i64, exp: i64| AccessClaims {
        client_id: client.id.clone(),
        account_id: account.clone(),
        scopes: ScopeSet::all(),
        issued_at: iat,
        expires_at: exp,
    };
    let expired = mint(&claims(now - 7300, now - 100));
    let foreign = JwtKey::new(b"some other key that is 32 bytes!").issue(&claims(now, now + 7200));
    let valid = mint(&claims(now, now + 7200));
    // Flip one character of the payload: the signature no longer matches.
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
    let forged = String::from_utf8(payload)
        .unwrap()
        .replace(account.as_str(), AccountId::generate().as_str());
    parts[1] = URL_SAFE_NO_PAD.encode(forged);
    let tampered = parts.join(".");
    let alg_none =
        format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("garbage", Some("Bearer garbage".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("basic scheme", Some(format!("Basic {good}"))),
        ("expired", Some(format!("Bearer {expired}"))),
        ("other key", Some(format!("Bearer {foreign}"))),
        ("tampered", Some(format!("Bearer {tampered}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
    ];
    for (name, header) in &cases {
        for (method, path, _) in routes() {
            let mut req = app.http.request(method.clone(), app.url(path));
            if let Some(h) = header {
                req = req.header("authorization", h);
            }
            let resp = req.fetch().await;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(
                headers.get("www-authenticate").unwrap(),
                r#"Bearer error="invalid_token""#,
                "{name}"
            );
            assert_error(&(status, headers, body), 401, UNAUTHORIZED, path);
        }
    }
    // The same minted claims with a live expiry do work: the 401s above are about the token.
    let r = app.get("/api/v2/webhooks", &valid).await;
    assert_eq!(r.0, 200);
}

#[tokio::test]
async fn a_deleted_clients_token_stops_working_within_5_seconds() {
    let (app, account, _) = TestApp::spawn_ready(&["sms"]).await;
    let client = app.client(&account, "webhooks.read").await;
    let token = app.token(&client, None).await;
    assert_eq!(app.get("/api/v2/webhooks", &token).await.0, 200);

    // Deleted behind the server's back, as `sipsimd client delete` in another process does.
    assert!(app.store.delete_client(&client.id).await.unwrap());
    let deleted_at = Instant::now();
    loop {
        let r = app.get("/api/v2/webhooks", &token).await;
        if r.0 == 401 {
            assert_error(&r, 401, UNAUTHORIZED, "/api/v2/webhooks");
            break;
        }
        assert!(
            deleted_at.elapsed() < Duration::from_secs(5),
            "token still accepted 5 s after the client was deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it cannot get a new one.
    let (status, body) = app
        .form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client.id.as_str()),
                ("client_secret", &client.secret),
            ],
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn accounts_never_see_or_change_each_other() {
    let (app, a, token_a) = TestApp::spawn_ready(&["sms", "rating"]).await;
    let (_, token_b) = app.ready(&["tags"]).await;

    let (_, _, b_list) = app.get("/api/v2/webhooks", &token_b).await;
    assert_eq!(b_list["data"], json!([{ "event": "tags" }]));
    let (_, _, b_set) = app.delete("/api/v2/webhooks/sms", &token_b).await;
    assert_eq!(b_set["data"]["subscribed_events"], json!(["tags"]));
    app.post("/api/v2/webhooks/voicemail", &token_b).await;

    let (_, _, a_list) = app.get("/api/v2/webhooks", &token_a).await;
    assert_eq!(a_list["data"], json!([{ "event": "sms" }, { "event": "rating" }]));
    let stored = app.store.get_integration(&a).await.unwrap().unwrap();
    assert_eq!(stored.events.names(), ["sms", "rating"]);

    // An account without an integration gets 404 even while others have one.
    let c = app.account().await;
    let client_c = app.client(&c, "webhooks.read").await;
    let token_c = app.token(&client_c, None).await;
    let (status, _, _) = app.get("/api/v2/webhooks", &token_c).await;
    assert_eq!(status, 404);
}
