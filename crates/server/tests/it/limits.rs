//! Rate limits: per API client on `/api/v2`; on `/oauth/token`, failures per address and client
//! id, and tokens issued per client.

use std::time::Duration;

use reqwest::StatusCode;
use sipsim_server::config::RateLimits;
use sipsim_server::limits::Rate;

use crate::helpers::{Fetch, TestApp, assert_error};

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap()
}

#[tokio::test]
async fn the_default_limit_is_announced_on_every_answer() {
    let (app, _, token) = TestApp::spawn_ready(&["sms"]).await;
    let (status, headers, _) = app.get("/api/v2/webhooks", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "ratelimit-limit"), "200");
    assert_eq!(header(&headers, "ratelimit-remaining"), "199");
    // An error answer of an authenticated client carries them too.
    let (status, headers, _) = app.post("/api/v2/webhooks/nope", &token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(header(&headers, "ratelimit-remaining"), "198");
}

#[tokio::test]
async fn an_api_client_over_its_rate_gets_429_and_others_do_not() {
    let limits = RateLimits { api: Some(Rate::new(1.0, 3)), ..RateLimits::off() };
    let app = TestApp::spawn_with_limits(limits).await;
    let (account, token) = app.ready(&["sms"]).await;
    for remaining in ["2", "1", "0"] {
        let (status, headers, _) = app.get("/api/v2/webhooks", &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "ratelimit-remaining"), remaining);
    }
    let refused = app.get("/api/v2/webhooks", &token).await;
    assert_error(
        &refused,
        429,
        "Too many requests: this API client may make 1 requests per second (bursts of 3). Retry after 1 s.",
        "/api/v2/webhooks",
    );
    assert_eq!(header(&refused.1, "retry-after"), "1");
    assert_eq!(header(&refused.1, "ratelimit-limit"), "3");
    assert_eq!(header(&refused.1, "ratelimit-remaining"), "0");
    assert_eq!(header(&refused.1, "ratelimit-reset"), "3");

    // Another client of the same account has its own budget; a bad token is not counted at all.
    let other = app.client(&account, "webhooks.read").await;
    let other_token = app.token(&other, None).await;
    let (status, _, _) = app.get("/api/v2/webhooks", &other_token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, _) = app.get("/api/v2/webhooks", "bad").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get("ratelimit-remaining").is_none());

    // After Retry-After, the client may go on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = app.get("/api/v2/webhooks", &token).await;
    assert_eq!(status, StatusCode::OK);
}

/// Posts a token request for `client_id` with `secret`, from `address` as the proxy says
/// (`X-Forwarded-For`); returns the status, `Retry-After` and the body.
fn token_request(
    app: &TestApp,
    address: &str,
    client_id: &str,
    secret: &str,
) -> impl Future<Output = (StatusCode, Option<String>, serde_json::Value)> + Send + 'static {
    let request =
        app.http.post(app.url("/oauth/token")).header("x-forwarded-for", address).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ]);
    async move {
        let r = request.fetch().await;
        let status = r.status();
        let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (status, retry, r.json().await.unwrap())
    }
}

#[tokio::test]
async fn token_failures_lock_out_their_address_never_the_client() {
    let app = TestApp::spawn_behind_proxy().await;
    let account = app.account().await;
    let client = app.client(&account, "webhooks.read").await;
    let other = app.client(&account, "webhooks.read").await;
    let id = client.id.to_string();

    // Fifty wrong secrets at once from one address: each counts before the secret is looked up,
    // so exactly the pair's ten are checked and the rest refused.
    let wrong: Vec<_> = (0..50)
        .map(|_| tokio::spawn(token_request(&app, "203.0.113.1", &id, "scs_wrong")))
        .collect();
    let statuses: Vec<_> = crate::helpers::joined(wrong).await.into_iter().map(|r| r.0).collect();
    // Nothing but 401 (checked) and 429 (refused before checking).
    assert_eq!(crate::helpers::tally(&statuses), [(401, 10), (429, 40)].into(), "{statuses:?}");
    let (status, retry, body) = token_request(&app, "203.0.113.1", &id, &client.secret).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "slow_down");
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // The client itself, from its own address, is not refused for what others sent.
    let (status, _, body) = token_request(&app, "198.51.100.7", &id, &client.secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Nor is another client from the guessing address.
    let (status, _, body) =
        token_request(&app, "203.0.113.1", other.id.as_str(), &other.secret).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An address trying many client ids is refused whole, even for a right secret.
    for _ in 0..20 {
        let made_up = sipsim_core::ClientId::generate().to_string();
        let (status, _, _) = token_request(&app, "203.0.113.9", &made_up, "scs_x").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = token_request(&app, "203.0.113.9", &id, &client.secret).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, _, _) = token_request(&app, "198.51.100.7", &id, &client.secret).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_changes_nothing() {
    // No trusted proxy: a client that writes its own X-Forwarded-For is still counted by its peer
    // address, so rotating the header does not get it past the limit.
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let client = app.client(&account, "webhooks.read").await;
    for i in 0..10 {
        let (status, _, _) =
            token_request(&app, &format!("192.0.2.{i}"), client.id.as_str(), "scs_x").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) =
        token_request(&app, "192.0.2.200", client.id.as_str(), &client.secret).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn tokens_issued_per_client_are_limited_and_only_the_client_spends_them() {
    let limits = RateLimits { token_per_client: Some(Rate::new(0.5, 2)), ..RateLimits::default() };
    let app = TestApp::spawn_with_limits(limits).await;
    let account = app.account().await;
    let client = app.client(&account, "webhooks.read").await;
    let id = client.id.to_string();
    // Wrong secrets do not spend the client's budget.
    for _ in 0..5 {
        let (status, _, _) = token_request(&app, "x", &id, "scs_wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..2 {
        let (status, _, body) = token_request(&app, "x", &id, &client.secret).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, retry, body) = token_request(&app, "x", &id, &client.secret).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "slow_down");
    assert!(body["error_description"].as_str().unwrap().contains("Tokens last 2 hours"));
    assert_eq!(retry.as_deref(), Some("2"));
}
