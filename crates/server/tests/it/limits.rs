//! Rate limits: per API client on `/api/v2`, per client and per address on `/oauth/token`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sipsim_server::config::RateLimits;
use sipsim_server::limits::Rate;

use crate::helpers::{TestApp, assert_error};

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_default_limit_is_announced_on_every_answer() {
    let app = TestApp::spawn().await;
    let (_, token) = app.ready(&["sms"]).await;
    let (status, headers, _) = app
        .call(Method::GET, "/api/v2/webhooks", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "ratelimit-limit"), "200");
    assert_eq!(header(&headers, "ratelimit-remaining"), "199");
    // An error answer of an authenticated client carries them too.
    let (status, headers, _) = app
        .call(Method::POST, "/api/v2/webhooks/nope", Some(&token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(header(&headers, "ratelimit-remaining"), "198");
}

#[tokio::test]
async fn an_api_client_over_its_rate_gets_429_and_others_do_not() {
    let limits = RateLimits {
        api: Some(Rate {
            per_second: 1.0,
            burst: 3,
        }),
        ..RateLimits::off()
    };
    let app = TestApp::spawn_with_limits(limits).await;
    let (account, token) = app.ready(&["sms"]).await;
    for remaining in ["2", "1", "0"] {
        let (status, headers, _) = app
            .call(Method::GET, "/api/v2/webhooks", Some(&token))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "ratelimit-remaining"), remaining);
    }
    let refused = app
        .call(Method::GET, "/api/v2/webhooks", Some(&token))
        .await;
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
    let (status, _, _) = app
        .call(Method::GET, "/api/v2/webhooks", Some(&other_token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, _) = app.call(Method::GET, "/api/v2/webhooks", Some("bad")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get("ratelimit-remaining").is_none());

    // After Retry-After, the client may go on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, _) = app
        .call(Method::GET, "/api/v2/webhooks", Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn token_requests_are_limited_per_client_and_per_address() {
    let limits = RateLimits {
        token_per_client: Some(Rate {
            per_second: 0.5,
            burst: 2,
        }),
        token_per_address: Some(Rate {
            per_second: 0.5,
            burst: 5,
        }),
        ..RateLimits::off()
    };
    let app = TestApp::spawn_with_limits(limits).await;
    let account = app.account().await;
    let client = app.client(&account, "webhooks.read").await;
    let form = |secret: &str| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), client.id.to_string()),
            ("client_secret".to_owned(), secret.to_owned()),
        ]
    };
    let post = |fields: Vec<(String, String)>| {
        let http = app.http.clone();
        let url = app.url("/oauth/token");
        async move {
            let r = http.post(url).form(&fields).send().await.unwrap();
            let status = r.status();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = r.json().await.unwrap();
            (status, retry, body)
        }
    };
    // Guessing the secret: two wrong guesses, then refused before the secret is even checked —
    // the right secret too, until the bucket refills.
    assert_eq!(post(form("scs_guess1")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post(form("scs_guess2")).await.0, StatusCode::UNAUTHORIZED);
    let (status, retry, body) = post(form(&client.secret)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "slow_down");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("Tokens last 2 hours")
    );
    assert_eq!(retry.as_deref(), Some("2"));

    // Other client ids from the same address: two more fit in the address's burst of five.
    let other = app.client(&account, "webhooks.read").await;
    let other_form = vec![
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        ("client_id".to_owned(), other.id.to_string()),
        ("client_secret".to_owned(), other.secret.clone()),
    ];
    assert_eq!(post(other_form.clone()).await.0, StatusCode::OK);
    assert_eq!(post(other_form.clone()).await.0, StatusCode::OK);
    let (status, _, body) = post(other_form).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}
