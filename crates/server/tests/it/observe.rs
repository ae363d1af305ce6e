//! What operators watch: `/healthz`, `/readyz` and `/metrics`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;

use crate::helpers::{Fetch, TestApp};
use sipsim_testkit::receiver::Receiver;

async fn get_text(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    let r = app.http.get(app.url(path)).fetch().await;
    let status = r.status();
    let content_type =
        r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, r.text().await.unwrap())
}

/// The value of the series `name{labels}` (labels as rendered, in order), or 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let (status, _, body) = app.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "ok" }));
    let (status, _, body) = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "status": "ready", "checks": { "database": "ok", "dispatcher": "ok" } })
    );
}

#[tokio::test]
async fn metrics_count_requests_deliveries_and_the_queue() {
    let app = TestApp::spawn_allowing_local_targets().await;
    let receiver = Receiver::answering(&[500]).await;
    let account = app.account().await;
    app.local_integration(&account, &receiver.url("/hook"), &["sms"]).await;
    let client = app.client(&account, "webhooks.read").await;
    let token = app.token(&client, None).await;

    let (status, content_type, before) = get_text(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let list = r#"sipsim_http_requests_total{route="/api/v2/webhooks",method="GET",status="200"}"#;
    let retries = "sipsim_delivery_retries_total";
    let succeeded = r#"sipsim_deliveries_total{outcome="succeeded"}"#;

    for _ in 0..3 {
        let (status, _, _) = app.get("/api/v2/webhooks", &token).await;
        assert_eq!(status, StatusCode::OK);
    }
    // One event: a 500 (retried), then a 200.
    app.ingest_example(&account, sipsim_core::Event::Sms).await;
    assert_eq!(receiver.wait_for(2, Duration::from_secs(10)).await.len(), 2);

    // The attempt is recorded just after the receiver answered.
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let (_, _, text) = get_text(&app, "/metrics").await;
        if sample(&text, succeeded) >= sample(&before, succeeded) + 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The recorder is the process's: other tests add to it, so these are lower bounds.
    assert!(sample(&after, list) >= sample(&before, list) + 3.0, "{after}");
    assert!(sample(&after, retries) >= sample(&before, retries) + 1.0);
    for series in [
        "sipsim_delivery_attempt_duration_seconds_bucket{le=\"0.1\"}",
        "sipsim_http_request_duration_seconds_count{route=\"/api/v2/webhooks\",method=\"GET\",status=\"200\"}",
        "sipsim_queue_pending",
        "sipsim_queue_due",
        "sipsim_queue_oldest_due_age_seconds",
        "sipsim_deliveries_in_flight",
        "sipsim_integrations_paused",
    ] {
        assert!(after.contains(series), "no {series} in:\n{after}");
    }
    assert_eq!(sample(&after, "sipsim_queue_stats_up"), 1.0);
    // No label names an account, a client or a token.
    assert!(!after.contains(account.as_str()));
    assert!(!after.contains(client.id.as_str()));
    assert!(!after.contains(&token));
}

#[tokio::test]
async fn readiness_fails_while_the_database_is_unreachable() {
    let Some(db) = sipsim_store::testing::postgres_test_db("readiness_database_down").await else {
        return;
    };
    let app = TestApp::spawn_on(db.url()).await;
    let (status, _, body) = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Refuse new connections to the database and cut the open ones.
    let admin_url = std::env::var(sipsim_store::testing::URL_VAR).unwrap();
    let name = db.url().rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let cut = |allow: bool| format!(r#"ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {allow}"#);
    sqlx::query(sqlx::AssertSqlSafe(cut(false))).execute(&mut admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    let (status, _, body) = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not ready");
    assert_ne!(body["checks"]["database"], "ok");
    // Liveness is not readiness: the process still answers.
    let (status, _, _) = app.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);

    sqlx::query(sqlx::AssertSqlSafe(cut(true))).execute(&mut admin).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = app.call(Method::GET, "/readyz", None).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(app);
    db.drop_database().await;
}

/// The adaptive concurrency limit, where an operator and a customer look for it: an endpoint that
/// answered 503 has half the cap; `/metrics` (behind its token) names it with its limit, the open
/// figures only count it, and the integration's page shows it.
#[tokio::test]
async fn an_endpoint_in_trouble_shows_its_lowered_limit_in_metrics_and_on_its_page() {
    const TOKEN: &str = "metrics-token-for-the-tests";
    let app = TestApp::start(crate::helpers::Setup {
        target_policy: sipsim_core::target::TargetPolicy::AllowInsecure,
        metrics_token: Some(TOKEN),
        ..Default::default()
    })
    .await;
    let receiver = Receiver::answering(&[503]).await;
    let (account, email) = crate::dashboard::user(&app).await;
    app.local_integration(&account, &receiver.url("/hook"), &["sms"]).await;
    let metrics = |token: Option<&'static str>| {
        let mut req = app.http.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.fetch().await;
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, body) = metrics(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("Missing or invalid metrics token."), "{body}");
    let (status, before) = metrics(Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sample(&before, "sipsim_integration_concurrency_cap"), 16.0);
    assert!(!before.contains(account.as_str()), "{before}");

    // One event: a 503 (halves the limit), then a 200 (adds 1/8: still 8).
    app.ingest_example(&account, sipsim_core::Event::Sms).await;
    assert_eq!(receiver.wait_for(2, Duration::from_secs(10)).await.len(), 2);
    let series =
        format!("sipsim_integration_concurrency_limit{{account_id=\"{}\"}}", account.as_str());
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let (_, text) = metrics(Some(TOKEN)).await;
        if sample(&text, &series) == 8.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&after, "sipsim_integrations_concurrency_lowered"), 1.0);

    let (session, _, _) =
        crate::dashboard::login_at(&app.url(""), &email, crate::dashboard::PASSWORD, false).await;
    let page = app
        .http
        .get(app.url("/dashboard/integrations/webhooks"))
        .header(reqwest::header::COOKIE, &session)
        .fetch_text()
        .await;
    assert!(
        page.contains(r#"Up to <strong id="concurrency-limit">8</strong> of 16 requests"#),
        "{page}"
    );
    assert!(page.contains("it grows back as your endpoint answers well"));
}

/// The `route` label is the template the router matched, never a path with an id in it; a path
/// that matched no route is `other`, so made-up paths cannot multiply series.
#[tokio::test]
async fn requests_are_labelled_by_their_route_template() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::DELETE, "/api/v2/webhooks/sms"),
        (Method::GET, "/api/v2/webhooks/available"),
        (Method::POST, "/api/v2/webhook-deliveries/dlv_1/resend"),
        (Method::GET, "/api/v2/webhooks/a/b"),
        (Method::GET, "/wp-admin.php"),
        (Method::GET, "/dashboard/deliveries/dlv_2"),
    ] {
        app.http.request(method, app.url(path)).fetch().await;
    }
    let (_, _, text) = get_text(&app, "/metrics").await;
    for series in [
        r#"sipsim_http_requests_total{route="/api/v2/webhooks/{event}",method="DELETE",status="401"}"#,
        r#"sipsim_http_requests_total{route="/api/v2/webhooks/available",method="GET",status="401"}"#,
        r#"sipsim_http_requests_total{route="/api/v2/webhook-deliveries/{id}/resend",method="POST",status="401"}"#,
        r#"sipsim_http_requests_total{route="/dashboard/deliveries/{delivery_id}",method="GET",status="303"}"#,
    ] {
        assert!(sample(&text, series) >= 1.0, "{series} missing:\n{text}");
    }
    assert!(
        sample(&text, r#"sipsim_http_requests_total{route="other",method="GET",status="404"}"#)
            >= 2.0,
        "{text}"
    );
    for id in ["sms\"", "dlv_1", "dlv_2", "wp-admin", "a/b"] {
        assert!(
            !text.lines().any(|l| l.starts_with("sipsim_http") && l.contains(id)),
            "{id} in a label:\n{text}"
        );
    }
}
