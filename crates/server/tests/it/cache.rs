//! `GET /api/v2/webhooks` answers from memory (issue 9's API target); these are the promises that
//! keep that memory honest.

use std::time::{Duration, Instant};

use sipsim_core::Event;
use sipsim_core::store::SubscriptionChange;

use crate::helpers::TestApp;

async fn enabled(app: &TestApp, token: &str) -> (u16, Vec<String>) {
    let (status, _, body) = app.get("/api/v2/webhooks", token).await;
    let names = body["data"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["event"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    (status.as_u16(), names)
}

#[tokio::test]
async fn a_client_sees_its_own_change_at_once() {
    let (app, _, token) = TestApp::spawn_ready(&["sms"]).await;
    // Read first, so the integration is in memory when it changes.
    assert_eq!(enabled(&app, &token).await, (200, vec!["sms".to_owned()]));
    let (status, _, _) = app.post("/api/v2/webhooks/rating", &token).await;
    assert_eq!(status, 200);
    assert_eq!(enabled(&app, &token).await.1, ["sms", "rating"], "the very next read");
    let (status, _, _) = app.delete("/api/v2/webhooks/sms", &token).await;
    assert_eq!(status, 200);
    assert_eq!(enabled(&app, &token).await.1, ["rating"]);
}

/// Waits until `GET /api/v2/webhooks` answers `want`; returns how long that took.
async fn until(app: &TestApp, token: &str, want: (u16, Vec<String>)) -> Duration {
    let started = Instant::now();
    loop {
        let got = enabled(app, token).await;
        if got == want {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(3), "still {got:?}, wanted {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn another_processs_change_shows_within_the_poll() {
    let (app, account, token) = TestApp::spawn_ready(&["sms"]).await;
    assert_eq!(enabled(&app, &token).await, (200, vec!["sms".to_owned()]));
    // Written to the database behind the server's back, as `sipsimd integration set` or a
    // second node does.
    app.store
        .change_subscription(&account, SubscriptionChange::Subscribe(Event::Voicemail))
        .await
        .unwrap();
    let took = until(&app, &token, (200, vec!["voicemail".into(), "sms".into()])).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    app.store.remove_integration(&account).await.unwrap();
    let took = until(&app, &token, (404, vec![])).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn an_integration_made_elsewhere_serves_at_once() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let token = app.token_for(&account, "webhooks.read").await;
    assert_eq!(enabled(&app, &token).await.0, 404);
    // As `sipsimd integration set` does, from another process.
    app.integration(&account, "https://example.com/hook", &["sms"]).await;
    assert_eq!(enabled(&app, &token).await, (200, vec!["sms".to_owned()]));
}
