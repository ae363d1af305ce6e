//! The sender and the dispatcher against real receivers on loopback.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sipsim_core::clock::now_secs;
use sipsim_core::payload::Payload;
use sipsim_core::queue::{DeliveryStatus, IngestOutcome, NewMessage};
use sipsim_core::retry::RetrySchedule;
use sipsim_core::secret::SigningSecret;
use sipsim_core::signing::{verify_sipsim, verify_standard};
use sipsim_core::store::IntegrationUpdate;
use sipsim_core::target::{TargetPolicy, WebhookUrl};
use sipsim_core::{Event, EventSet, Store};
use sipsim_delivery::resolve::parse_overrides;
use sipsim_delivery::sender::Outgoing;
use sipsim_delivery::{Dispatcher, DispatcherConfig, Sender, SenderConfig, Verdict};
use sipsim_testkit::receiver::{Receiver, Reply};
use tokio_util::sync::CancellationToken;

fn insecure(timeout_ms: u64) -> Sender {
    Sender::new(SenderConfig {
        timeout: Duration::from_millis(timeout_ms),
        policy: TargetPolicy::AllowInsecure,
        ..SenderConfig::default()
    })
    .unwrap()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).unwrap_or_else(|| panic!("no {name}")).to_str().unwrap()
}

#[tokio::test]
async fn a_request_carries_the_exact_body_and_every_header_and_verifies_both_ways() {
    let rx = Receiver::start(vec![]).await;
    let addr = rx.addr();
    let secret = SigningSecret::generate();
    for event in Event::CATALOG {
        let body = Payload::example(event).to_json();
        let url = format!("http://{addr}/hook?x=1");
        let (record, verdict) = insecure(2000)
            .send(Outgoing {
                url: &url,
                message_id: "msg_01jd8k3m4n5p6q7r8s9t0v1w2x",
                event: event.name(),
                body: &body,
                secret: secret.expose(),
                previous_secret: None,
            })
            .await;
        assert_eq!(verdict, Verdict::Success, "{record:?}");
        assert_eq!(record.status_code, Some(200));
        assert_eq!(record.response_snippet.as_deref(), Some("receiver says hi"));
    }
    let got = rx.requests();
    assert_eq!(got.len(), 14);
    for (req, event) in got.iter().zip(Event::CATALOG) {
        let h = &req.headers;
        assert_eq!(req.body.as_ref(), Payload::example(event).to_json().as_slice());
        assert_eq!(header(h, "content-type"), "application/json");
        assert_eq!(header(h, "x-webhook-event"), event.name());
        assert_eq!(header(h, "x-webhook-id"), "msg_01jd8k3m4n5p6q7r8s9t0v1w2x");
        assert_eq!(header(h, "webhook-id"), "msg_01jd8k3m4n5p6q7r8s9t0v1w2x");
        assert!(header(h, "user-agent").starts_with("sipsim-webhooks/"));
        let ts = header(h, "x-webhook-timestamp");
        assert_eq!(ts, header(h, "webhook-timestamp"));
        assert!((ts.parse::<i64>().unwrap() - now_secs()).abs() < 5);
        let sig = header(h, "x-webhook-signature");
        assert_eq!(sig.len(), 64);
        assert!(sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        verify_sipsim(secret.expose(), ts, sig, &req.body).unwrap();
        verify_standard(
            secret.expose(),
            header(h, "webhook-id"),
            ts,
            header(h, "webhook-signature"),
            &req.body,
            now_secs(),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn hangs_redirects_big_bodies_and_errors_are_failures_within_the_timeout() {
    let rx = Receiver::start(vec![
        Reply::Hang,
        Reply::Redirect("http://169.254.169.254/latest/meta-data"),
        Reply::Big(10 * 1024 * 1024),
        Reply::Status(503),
    ])
    .await;
    let addr = rx.addr();
    let sender = insecure(500);
    let url = format!("http://{addr}/");
    let send = |sender: Sender, url: String| async move {
        sender
            .send(Outgoing {
                url: &url,
                message_id: "msg_x",
                event: "sms",
                body: b"{}",
                secret: "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                previous_secret: None,
            })
            .await
    };

    let started = Instant::now();
    let (hang, v) = send(sender.clone(), url.clone()).await;
    let _addr = rx.addr();
    assert_eq!(v, Verdict::FAILURE);
    assert_eq!(hang.error.as_deref(), Some("timeout after 500ms"));
    assert!(started.elapsed() < Duration::from_millis(1500), "cut at the timeout");

    let (redirect, v) = send(sender.clone(), url.clone()).await;
    assert_eq!(v, Verdict::FAILURE);
    assert_eq!(redirect.status_code, Some(302));
    assert_eq!(rx.requests().len(), 2, "the redirect was not followed");

    let (big, v) = send(sender.clone(), url.clone()).await;
    assert_eq!(v, Verdict::Success);
    assert_eq!(big.response_snippet.as_ref().map(String::len), Some(1024));

    let (unavailable, v) = send(sender.clone(), url.clone()).await;
    assert_eq!(v, Verdict::FAILURE);
    assert_eq!(unavailable.status_code, Some(503));
    assert_eq!(unavailable.error.as_deref(), Some("HTTP 503"));

    // Nobody listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let (refused, v) = send(sender.clone(), dead).await;
    assert_eq!(v, Verdict::FAILURE);
    assert!(refused.error.as_deref().unwrap().starts_with("connection failed"), "{refused:?}");
}

#[tokio::test]
async fn the_ssrf_guard_refuses_private_targets_before_connecting() {
    const NOT_ALLOWED: &str =
        "blocked: target not allowed: no public address was found for this host";
    assert!(NOT_ALLOWED.ends_with(sipsim_delivery::resolve::TARGET_NOT_ALLOWED));
    let rx = Receiver::start(vec![]).await;
    let addr = rx.addr();
    let port = addr.port();
    let guarded = Sender::new(SenderConfig {
        timeout: Duration::from_millis(1000),
        policy: TargetPolicy::PublicHttpsOnly,
        dns_overrides: parse_overrides(
            "private.test=10.0.0.1,loop.test=127.0.0.1,mapped.test=::ffff:127.0.0.1,v6.test=::1,meta.test=169.254.169.254",
        )
        .unwrap(),
        extra_ca_pem: None,
    })
    .unwrap();
    let cases = [
        (format!("https://127.0.0.1:{port}/"), "blocked: 127.0.0.1 is a loopback address"),
        (format!("https://[::1]:{port}/"), "blocked: ::1 is a loopback address"),
        (
            format!("https://[::ffff:127.0.0.1]:{port}/"),
            "blocked: ::ffff:127.0.0.1 is a loopback address",
        ),
        (format!("http://example.com:{port}/"), "blocked: only https:// targets are allowed"),
        (format!("https://private.test:{port}/"), NOT_ALLOWED),
        (format!("https://loop.test:{port}/"), NOT_ALLOWED),
        (format!("https://mapped.test:{port}/"), NOT_ALLOWED),
        (format!("https://v6.test:{port}/"), NOT_ALLOWED),
        (format!("https://meta.test:{port}/"), NOT_ALLOWED),
        // A name that does not resolve at all reads the same as one that resolves only to private
        // addresses: customers cannot map internal DNS through last_error.
        (format!("https://no-such-host.invalid:{port}/"), NOT_ALLOWED),
    ];
    for (url, expected) in cases {
        let (record, verdict) = guarded
            .send(Outgoing {
                url: &url,
                message_id: "msg_x",
                event: "sms",
                body: b"{}",
                secret: "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                previous_secret: None,
            })
            .await;
        assert_eq!(verdict, Verdict::FAILURE);
        assert_eq!(record.error.as_deref(), Some(expected), "{url}");
        assert_eq!(record.status_code, None);
    }
    assert!(rx.requests().is_empty(), "nothing reached the receiver");
}

async fn store_with_integration(
    url: &str,
    events: &[Event],
) -> (Arc<dyn Store>, sipsim_core::AccountId, tempfile::TempDir) {
    let (store, dir) = common::sqlite_store().await;
    let acc = store.create_account("Acme").await.unwrap().id;
    store
        .put_integration(
            &acc,
            IntegrationUpdate {
                webhook_url: WebhookUrl::parse(url, TargetPolicy::AllowInsecure).unwrap(),
                disabled: false,
                events: Some(events.iter().copied().collect::<EventSet>()),
                new_signing_secret: SigningSecret::generate(),
            },
        )
        .await
        .unwrap();
    (store, acc, dir)
}

/// Runs a dispatcher over `store` with `schedule` until the returned token is cancelled.
fn start_dispatcher(
    store: &Arc<dyn Store>,
    schedule: &str,
) -> (Arc<tokio::sync::Notify>, CancellationToken, tokio::task::JoinHandle<()>) {
    start_dispatcher_pausing_after(store, schedule, Duration::from_secs(5 * 24 * 3600))
}

fn start_dispatcher_pausing_after(
    store: &Arc<dyn Store>,
    schedule: &str,
    pause_after: Duration,
) -> (Arc<tokio::sync::Notify>, CancellationToken, tokio::task::JoinHandle<()>) {
    let dispatcher = Dispatcher::new(
        store.clone(),
        insecure(1000),
        DispatcherConfig {
            schedule: RetrySchedule::parse(schedule, 0.0).unwrap(),
            timeout: Duration::from_millis(1000),
            pause_after,
            ..DispatcherConfig::default()
        },
    );
    let wake = dispatcher.waker();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    (wake, shutdown, running)
}

/// Ingests one message and returns its ids.
async fn enqueue(
    store: &Arc<dyn Store>,
    account: &sipsim_core::AccountId,
    event: Event,
    body: Vec<u8>,
) -> (sipsim_core::DeliveryId, sipsim_core::MessageId) {
    let out = store
        .ingest(
            &[NewMessage {
                account_id: account.clone(),
                event,
                body,
                ordering_key: None,
                idempotency_key: None,
            }],
            sipsim_core::clock::now_ms(),
        )
        .await
        .unwrap();
    match out[0].clone() {
        IngestOutcome::Enqueued { delivery_id, message_id } => (delivery_id, message_id),
        other => panic!("not enqueued: {other:?}"),
    }
}

/// Polls the delivery until it has `status` (or 5 s pass) and returns it.
async fn wait_for_status(
    store: &Arc<dyn Store>,
    id: &sipsim_core::DeliveryId,
    status: DeliveryStatus,
) -> sipsim_core::queue::DeliveryRecord {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = store.get_delivery(id).await.unwrap().unwrap();
        if d.status == status || Instant::now() > deadline {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_dispatcher_retries_on_schedule_with_the_same_id_and_a_fresh_signature() {
    let rx = Receiver::start(vec![Reply::Status(500), Reply::Status(500)]).await;
    let (store, acc, _dir) = store_with_integration(&rx.url("/hook"), &[Event::Sms]).await;
    let (wake, shutdown, running) = start_dispatcher(&store, "0s,1100ms,300ms,10s");
    let body = Payload::example(Event::Sms).to_json();
    let enqueued_at = Instant::now();
    let (delivery_id, message_id) = enqueue(&store, &acc, Event::Sms, body.clone()).await;
    wake.notify_one();

    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "500, 500, then 200");
    assert!(
        got[0].at.duration_since(enqueued_at) < Duration::from_millis(500),
        "the first attempt does not wait for a poll"
    );
    let gap1 = got[1].at.duration_since(got[0].at);
    let gap2 = got[2].at.duration_since(got[1].at);
    assert!(gap1 >= Duration::from_millis(1100) && gap1 < Duration::from_millis(2100), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(300) && gap2 < Duration::from_millis(1300), "{gap2:?}");
    for r in &got {
        assert_eq!(header(&r.headers, "x-webhook-id"), message_id.as_str());
        assert_eq!(r.body.as_ref(), body.as_slice());
    }
    assert_ne!(
        header(&got[0].headers, "x-webhook-signature"),
        header(&got[1].headers, "x-webhook-signature"),
        "signed afresh (a second later)"
    );

    // The result is recorded once the attempt completes.
    let record = wait_for_status(&store, &delivery_id, DeliveryStatus::Succeeded).await;
    assert_eq!(record.status, DeliveryStatus::Succeeded);
    assert_eq!(record.attempts, 3);
    let attempts = store.list_attempts(&delivery_id).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn the_last_failed_attempt_marks_the_delivery_failed() {
    let rx = Receiver::start(vec![Reply::Status(500); 5]).await;
    let (store, acc, _dir) = store_with_integration(&rx.url("/hook"), &[Event::Tags]).await;
    let (wake, shutdown, running) = start_dispatcher(&store, "0s,50ms");
    let (delivery_id, _) = enqueue(&store, &acc, Event::Tags, b"{}".to_vec()).await;
    wake.notify_one();
    let d = wait_for_status(&store, &delivery_id, DeliveryStatus::Failed).await;
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.attempts, 2);
    assert_eq!(d.last_error.as_deref(), Some("HTTP 500"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.requests().len(), 2, "no attempt after the last one");
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn retry_after_is_honoured_beyond_the_schedule() {
    let rx = Receiver::start(vec![Reply::RetryAfter(503, "2"), Reply::RetryAfter(429, "0")]).await;
    let (store, acc, _dir) = store_with_integration(&rx.url("/hook"), &[Event::Sms]).await;
    let _addr = rx.addr();
    let (wake, shutdown, running) = start_dispatcher(&store, "0s,100ms,100ms");
    let (delivery_id, _) = enqueue(&store, &acc, Event::Sms, b"{}".to_vec()).await;
    wake.notify_one();
    let got = rx.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3);
    let waited = got[1].at.duration_since(got[0].at);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(3000),
        "503 with Retry-After: 2 waited {waited:?}, not the schedule's 100 ms"
    );
    let waited = got[2].at.duration_since(got[1].at);
    assert!(waited < Duration::from_millis(1000), "Retry-After: 0 keeps the schedule: {waited:?}");
    let d = wait_for_status(&store, &delivery_id, DeliveryStatus::Succeeded).await;
    assert_eq!(d.attempts, 3);
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn gone_pauses_at_once_keeps_new_events_and_delivers_them_on_resume() {
    use sipsim_core::store::{IntegrationState, KeptDeliveries};

    let rx = Receiver::start(vec![Reply::Status(410)]).await;
    let (store, acc, _dir) =
        store_with_integration(&rx.url("/hook"), &[Event::Sms, Event::Tags]).await;
    let (wake, shutdown, running) = start_dispatcher(&store, "0s,100ms,100ms");
    let (first, _) = enqueue(&store, &acc, Event::Sms, b"{\"n\":1}".to_vec()).await;
    wake.notify_one();
    let d = wait_for_status(&store, &first, DeliveryStatus::Paused).await;
    assert_eq!(d.status, DeliveryStatus::Paused);
    assert_eq!(d.last_status_code, Some(410));
    let i = store.get_integration(&acc).await.unwrap().unwrap();
    assert_eq!(i.state, IntegrationState::Paused);
    assert_eq!(i.paused_reason.as_deref(), Some("the endpoint answered 410 Gone"));
    assert!(!i.setting().enabled);

    // While paused, new events are kept (not dropped, not sent).
    let (second, _) = enqueue(&store, &acc, Event::Tags, b"{\"n\":2}".to_vec()).await;
    wake.notify_one();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.requests().len(), 1, "nothing sent while paused");
    assert_eq!(store.get_delivery(&second).await.unwrap().unwrap().status, DeliveryStatus::Paused);

    // Resuming with "deliver" sends both.
    assert_eq!(
        store
            .resume_integration(&acc, KeptDeliveries::Deliver, sipsim_core::clock::now_ms())
            .await
            .unwrap(),
        Some(2)
    );
    wake.notify_one();
    let got = rx.wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    let bodies: Vec<&[u8]> = got[1..].iter().map(|r| r.body.as_ref()).collect();
    assert!(bodies.contains(&b"{\"n\":1}".as_slice()) && bodies.contains(&b"{\"n\":2}".as_slice()));
    assert_eq!(
        wait_for_status(&store, &second, DeliveryStatus::Succeeded).await.status,
        DeliveryStatus::Succeeded
    );
    assert_eq!(
        store.resume_integration(&acc, KeptDeliveries::Deliver, 0).await.unwrap(),
        None,
        "not paused any more"
    );
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn an_endpoint_failing_for_the_pause_period_is_paused_and_drop_drops_what_was_kept() {
    use sipsim_core::store::{IntegrationState, KeptDeliveries};

    let rx = Receiver::start(vec![Reply::Status(500); 100]).await;
    let (store, acc, _dir) = store_with_integration(&rx.url("/hook"), &[Event::Sms]).await;
    let (wake, shutdown, running) = start_dispatcher_pausing_after(
        &store,
        "0s,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms",
        Duration::from_secs(1),
    );
    let (failing, _) = enqueue(&store, &acc, Event::Sms, b"{}".to_vec()).await;
    wake.notify_one();
    let deadline = Instant::now() + Duration::from_secs(10);
    let paused = loop {
        let i = store.get_integration(&acc).await.unwrap().unwrap();
        if i.state == IntegrationState::Paused || Instant::now() > deadline {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(paused.state, IntegrationState::Paused);
    assert!(paused.paused_reason.unwrap().contains("failed"));
    let sent_when_paused = rx.requests().len();
    assert!(sent_when_paused >= 2);

    let (kept, _) = enqueue(&store, &acc, Event::Sms, b"{}".to_vec()).await;
    assert_eq!(store.get_delivery(&kept).await.unwrap().unwrap().status, DeliveryStatus::Paused);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.requests().len(), sent_when_paused, "no attempts while paused");

    assert_eq!(
        store
            .resume_integration(&acc, KeptDeliveries::Drop, sipsim_core::clock::now_ms())
            .await
            .unwrap(),
        Some(1)
    );
    let dropped = store.get_delivery(&kept).await.unwrap().unwrap();
    assert_eq!(dropped.status, DeliveryStatus::Failed);
    assert_eq!(
        dropped.last_error.as_deref(),
        Some("dropped when the paused integration was resumed")
    );
    // The delivery that was retrying when the pause came goes on retrying after the resume.
    let before = rx.requests().len();
    wake.notify_one();
    let _ = rx.wait_for(before + 1, Duration::from_secs(3)).await;
    assert!(rx.requests().len() > before);
    assert_ne!(store.get_delivery(&failing).await.unwrap().unwrap().status, DeliveryStatus::Paused);
    shutdown.cancel();
    running.await.unwrap();
}

/// How long the healthy account's 50 events take to arrive, with or without a hanging account that
/// has 60 deliveries queued ahead of them. Returns (elapsed, most hanging requests at once).
async fn healthy_account_run(with_hanging: bool) -> (Duration, usize) {
    let healthy_rx = Receiver::start(vec![]).await;
    let healthy_addr = healthy_rx.addr();
    let (store, healthy, _dir) =
        store_with_integration(&format!("http://{healthy_addr}/ok"), &[Event::Sms]).await;
    let hanging_rx = Receiver::always(Reply::Hang).await;
    let hanging_addr = hanging_rx.addr();
    let hanging = store.create_account("hangs").await.unwrap().id;
    store
        .put_integration(
            &hanging,
            IntegrationUpdate {
                webhook_url: WebhookUrl::parse(
                    &format!("http://{hanging_addr}/slow"),
                    TargetPolicy::AllowInsecure,
                )
                .unwrap(),
                disabled: false,
                events: Some([Event::Sms].into_iter().collect()),
                new_signing_secret: SigningSecret::generate(),
            },
        )
        .await
        .unwrap();
    if with_hanging {
        for _ in 0..60 {
            enqueue(&store, &hanging, Event::Sms, b"{}".to_vec()).await;
        }
    }
    let dispatcher = Dispatcher::new(
        store.clone(),
        insecure(1000),
        DispatcherConfig {
            concurrency: 32,
            per_integration: 4,
            schedule: RetrySchedule::parse("0s,30s", 0.0).unwrap(),
            timeout: Duration::from_millis(1000),
            ..DispatcherConfig::default()
        },
    );
    let wake = dispatcher.waker();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    let started = Instant::now();
    for _ in 0..50 {
        enqueue(&store, &healthy, Event::Sms, b"{}".to_vec()).await;
    }
    wake.notify_one();
    let got = healthy_rx.wait_for(50, Duration::from_secs(20)).await;
    let elapsed = started.elapsed();
    assert_eq!(got.len(), 50, "every healthy event arrived");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), running).await;
    let most = hanging_rx.most_in_progress();
    if with_hanging {
        assert!(!hanging_rx.requests().is_empty(), "the hanging endpoint was tried");
    }
    (elapsed, most)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_holds_only_its_own_slots() {
    let (alone, _) = healthy_account_run(false).await;
    let (beside_hanging, most) = healthy_account_run(true).await;
    println!(
        "isolation: 50 healthy events took {alone:.2?} alone and {beside_hanging:.2?} beside an endpoint \
         that hangs with 60 deliveries queued ahead of them; the hanging one held at most {most} of 32 slots"
    );
    assert!(most <= 4, "the hanging endpoint held {most} slots, more than its 4");
    assert!(most >= 1);
}

#[tokio::test]
async fn after_a_regeneration_both_secrets_verify_the_standard_signature() {
    let rx = Receiver::start(vec![]).await;
    let addr = rx.addr();
    let (new, old) = (SigningSecret::generate(), SigningSecret::generate());
    let body = Payload::example(Event::Sms).to_json();
    let url = format!("http://{addr}/hook");
    let (record, verdict) = insecure(2000)
        .send(Outgoing {
            url: &url,
            message_id: "msg_01jd8k3m4n5p6q7r8s9t0v1w2x",
            event: "sms",
            body: &body,
            secret: new.expose(),
            previous_secret: Some(old.expose()),
        })
        .await;
    assert_eq!(verdict, Verdict::Success, "{record:?}");
    let got = rx.requests();
    let h = &got[0].headers;
    let ts = header(h, "webhook-timestamp");
    let standard = header(h, "webhook-signature");
    assert_eq!(standard.split(' ').count(), 2, "{standard}");
    // A receiver still on the old secret, and one already on the new, both accept it.
    for secret in [&new, &old] {
        verify_standard(
            secret.expose(),
            header(h, "webhook-id"),
            ts,
            standard,
            &got[0].body,
            now_secs(),
        )
        .unwrap();
    }
    // SIPSIM's own header has room for one signature: the new secret's.
    let sig = header(h, "x-webhook-signature");
    verify_sipsim(new.expose(), ts, sig, &got[0].body).unwrap();
    assert!(verify_sipsim(old.expose(), ts, sig, &got[0].body).is_err());
}

/// A backlog of calls (five events each, queued before the dispatcher starts) goes out in trains:
/// each call's events in ingest order, and a failed event holds the rest of its call back until its
/// retry has succeeded, while other calls go on.
#[tokio::test]
async fn a_backlog_of_calls_goes_out_in_order_and_a_retry_holds_back_only_its_call() {
    // The third request fails once; whichever event it is, its call's later events must wait.
    let rx =
        Receiver::start(vec![Reply::Status(200), Reply::Status(200), Reply::Status(500)]).await;
    let (store, acc, _dir) =
        store_with_integration(&rx.url("/hook"), &[Event::IncomingCallStart]).await;
    let _addr = rx.addr();
    const CALLS: usize = 20;
    const EVENTS: usize = 5;
    // Interleaved as a PBX sends them: event k of every call, then event k + 1.
    let messages: Vec<NewMessage> = (0..EVENTS)
        .flat_map(|k| {
            let acc = acc.clone();
            (0..CALLS).map(move |call| NewMessage {
                account_id: acc.clone(),
                event: Event::IncomingCallStart,
                body: format!(r#"{{"call":{call},"n":{k}}}"#).into_bytes(),
                ordering_key: Some(format!("call_{call}")),
                idempotency_key: None,
            })
        })
        .collect();
    store.ingest(&messages, sipsim_core::clock::now_ms()).await.unwrap();
    let (_wake, shutdown, running) = start_dispatcher(&store, "0s,200ms,1s");
    let got = rx.wait_for(CALLS * EVENTS + 1, Duration::from_secs(10)).await;
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(got.len(), CALLS * EVENTS + 1, "every event, one of them twice");
    let mut per_call: Vec<Vec<u64>> = vec![Vec::new(); CALLS];
    for r in &got {
        // {"call":C,"n":K}
        let body = std::str::from_utf8(&r.body).unwrap();
        let numbers: Vec<u64> = body
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        per_call[numbers[0] as usize].push(numbers[1]);
    }
    let mut retried = 0;
    for (call, seen) in per_call.iter().enumerate() {
        let mut deduped = seen.clone();
        deduped.dedup();
        assert_eq!(deduped, [0, 1, 2, 3, 4], "call {call}: {seen:?}");
        retried += seen.len() - deduped.len();
    }
    assert_eq!(retried, 1, "the failed event was sent again, right before its successors");
}

/// A customer's maximum rate: events above it wait in the queue (none dropped) and go out in
/// order, a call's too, at the rate after a second's burst; removing it lifts the throttle.
#[tokio::test]
async fn a_maximum_rate_spaces_deliveries_and_keeps_their_order() {
    use sipsim_core::store::DeliveryRate;
    let rx = Receiver::start(Vec::new()).await;
    let (store, acc, _dir) = store_with_integration(&rx.url("/hook"), &[Event::Sms]).await;
    store.set_delivery_rate(&acc, DeliveryRate::parse("4")).await.unwrap();
    // Twelve events of one call: a burst of 4 (one second's worth), then one every 250 ms.
    const N: usize = 12;
    let messages: Vec<NewMessage> = (0..N)
        .map(|n| NewMessage {
            account_id: acc.clone(),
            event: Event::Sms,
            body: format!(r#"{{"n":{n}}}"#).into_bytes(),
            ordering_key: Some("call_1".into()),
            idempotency_key: None,
        })
        .collect();
    store.ingest(&messages, sipsim_core::clock::now_ms()).await.unwrap();
    let (_wake, shutdown, running) = start_dispatcher(&store, "0s,200ms,1s");
    let got = rx.wait_for(N, Duration::from_secs(15)).await;
    assert_eq!(got.len(), N, "nothing dropped");
    let order: Vec<String> =
        got.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    let expected: Vec<String> = (0..N).map(|n| format!(r#"{{"n":{n}}}"#)).collect();
    assert_eq!(order, expected, "in order");
    let first = got[0].at;
    for (i, r) in got.iter().enumerate().skip(4) {
        // Token i arrives (i - 3) quarter-seconds after the bucket was made (just before the
        // first send); lateness only adds to it.
        let earliest =
            Duration::from_millis(250 * (i as u64 - 3)).saturating_sub(Duration::from_millis(150));
        assert!(
            r.at - first >= earliest,
            "delivery {i} after {:?}, before {earliest:?}",
            r.at - first
        );
    }
    let span = got[N - 1].at - first;
    assert!(span < Duration::from_secs(6), "the throttle must not stall: {span:?}");
    // Without the rate, a burst goes out at once.
    store.set_delivery_rate(&acc, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // the dispatcher re-reads rates each second
    let more: Vec<NewMessage> = (0..N)
        .map(|n| NewMessage {
            ordering_key: None,
            body: format!(r#"{{"m":{n}}}"#).into_bytes(),
            ..messages[n].clone()
        })
        .collect();
    store.ingest(&more, sipsim_core::clock::now_ms()).await.unwrap();
    _wake.notify_one();
    let all = rx.wait_for(2 * N, Duration::from_secs(5)).await;
    assert_eq!(all.len(), 2 * N);
    let unthrottled = all[2 * N - 1].at - all[N].at;
    assert!(unthrottled < Duration::from_millis(1500), "{unthrottled:?}");
    shutdown.cancel();
    running.await.unwrap();
}
