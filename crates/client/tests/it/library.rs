//! `sipsim_client::Client` against a live server: the contract's routes, token caching, typed errors.

use sipsim_client::{ApiErrorKind, Client, DeliveryQuery, Error};
use sipsim_core::Event;

use crate::support::{Credentials, Live};

fn client(k: &Credentials) -> Client {
    Client::builder(&k.api_url).credentials(&k.id, &k.secret).build().unwrap()
}

fn api_kind(e: Error) -> ApiErrorKind {
    match e {
        Error::Api(api) => {
            assert!(api.request_id.is_some(), "{api:?}");
            api.kind()
        }
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bulk_enable_example_works_with_one_cached_token() {
    let live = Live::start().await;
    let (account, k) = live.customer("webhooks.read webhooks.write").await;
    let c = client(&k);

    // Before the dashboard set a URL: the contract's 404, typed.
    let e = c.enabled_events().await.unwrap_err();
    assert_eq!(api_kind(e), ApiErrorKind::NotConfigured);

    live.integration(&account, "https://example.com/webhooks/sipsim", &["sms"]).await;
    let available = c.available_events().await.unwrap();
    assert_eq!(available.len(), 14);
    let mut last = None;
    for event in &available {
        last = Some(c.enable_event(event).await.unwrap());
    }
    let setting = last.unwrap();
    assert_eq!(setting.webhook_url, "https://example.com/webhooks/sipsim");
    assert!(setting.enabled);
    let catalog: Vec<&str> = Event::CATALOG.iter().map(|e| e.name()).collect();
    assert_eq!(setting.subscribed_events, catalog);
    assert_eq!(c.enabled_events().await.unwrap(), catalog);
    let after = c.disable_event("incoming_call_start").await.unwrap();
    assert_eq!(after.subscribed_events.len(), 13);

    // 18 calls, one token.
    assert_eq!(c.tokens_requested(), 1);

    let e = c.enable_event("invalid_event").await.unwrap_err();
    let Error::Api(api) = e else { panic!("not an API error") };
    assert_eq!(api.kind(), ApiErrorKind::UnknownEvent);
    assert_eq!(api.status, 400);
    assert_eq!(
        api.errors,
        [
            "Unknown event 'invalid_event'. Use GET /api/v2/webhooks/available for the list of valid events."
        ]
    );
    assert_eq!(api.path.as_deref(), Some("/api/v2/webhooks/invalid_event"));

    let page = c
        .list_deliveries(&DeliveryQuery {
            status: Some("failed".into()),
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    assert!(page.data.is_empty() && !page.pagination.has_more);
    let e = c.resend_delivery("dlv_nothing").await.unwrap_err();
    assert_eq!(api_kind(e), ApiErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_renewed_once_then_the_refusal_is_typed() {
    let live = Live::start().await;
    let (account, k) = live.customer("webhooks.read").await;
    live.integration(&account, "https://example.com/hook", &["sms"]).await;
    let c = client(&k);
    assert_eq!(c.enabled_events().await.unwrap(), ["sms"]);
    assert_eq!(c.tokens_requested(), 1);

    // Missing scope: 403, no renewal (a new token would not have it either).
    let e = c.enable_event("tags").await.unwrap_err();
    assert_eq!(api_kind(e), ApiErrorKind::InsufficientScope);
    assert_eq!(c.tokens_requested(), 1);

    // The client is deleted: its token is refused, the client asks for a new one once, and the
    // answer is the token endpoint's invalid_client.
    let id = sipsim_core::ClientId::parse(&k.id).unwrap();
    assert!(live.store.delete_client(&id).await.unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let e = loop {
        match c.enabled_events().await {
            Ok(_) => {
                assert!(std::time::Instant::now() < deadline, "never revoked");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => break e,
        }
    };
    match e {
        Error::OAuth { status, error, .. } => {
            assert_eq!(status, 401);
            assert_eq!(error, "invalid_client");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.tokens_requested(), 2);

    // A given token is used as is: a bad one is a typed 401.
    let bad = Client::builder(&live.url).access_token("not-a-token").build().unwrap();
    let e = bad.available_events().await.unwrap_err();
    assert_eq!(api_kind(e), ApiErrorKind::Unauthorized);
    assert!(matches!(
        Client::builder("ftp://example.com").access_token("t").build(),
        Err(Error::Config(_))
    ));
}
