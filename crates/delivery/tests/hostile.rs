//! Hostile receivers, on raw sockets so they can misbehave as no HTTP framework would: never
//! answering, trickling the head or the body a byte a second, sending 100 MB, closing mid-head or
//! mid-body, resetting, redirecting to the cloud metadata address. Each attempt ends within the
//! timeout, none holds more than its integration's slots, the healthy account beside them is served,
//! and the process never holds the big body in memory. (Private targets behind DNS names and bad
//! certificates have their own tests: `delivery.rs`, `tls.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sipsim_core::queue::DeliveryStatus;
use sipsim_core::retry::RetrySchedule;
use sipsim_core::target::TargetPolicy;
use sipsim_core::{AccountId, Store};
use sipsim_delivery::sender::Outgoing;
use sipsim_delivery::{Dispatcher, DispatcherConfig, Sender, SenderConfig, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

mod common;
mod raw_http;
use common::{enqueue, integration};
use raw_http::read_request;

const TIMEOUT: Duration = Duration::from_millis(1000);
/// How far past the timeout an attempt may end (scheduling on a loaded 2-core machine).
const GRACE: Duration = Duration::from_millis(700);
const HUGE: usize = 100 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hostile {
    NeverAnswers,
    TrickleHead,
    TrickleBody,
    Huge,
    CloseMidHead,
    CloseMidBody,
    Reset,
    RedirectToMetadata,
    Healthy,
}

const ALL: [Hostile; 8] = [
    Hostile::NeverAnswers,
    Hostile::TrickleHead,
    Hostile::TrickleBody,
    Hostile::Huge,
    Hostile::CloseMidHead,
    Hostile::CloseMidBody,
    Hostile::Reset,
    Hostile::RedirectToMetadata,
];

/// A listener behaving as `kind`; counts the connections open at once.
struct Endpoint {
    url: String,
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

async fn endpoint(kind: Hostile) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (open, most, total) = (Arc::default(), Arc::default(), Arc::default());
    let counters: (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicUsize>) =
        (Arc::clone(&open), Arc::clone(&most), Arc::clone(&total));
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (open, most, total) = counters.clone();
            tokio::spawn(async move {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                total.fetch_add(1, Ordering::SeqCst);
                let mut socket = socket;
                let linger = serve(kind, &mut socket).await;
                // The exchange is over once the answer is out: a pause before closing (which a
                // client that has its answer does not wait for) is not a slot held.
                open.fetch_sub(1, Ordering::SeqCst);
                tokio::time::sleep(linger).await;
            });
        }
    });
    Endpoint { url, open, most, total }
}

/// Waits until the client closes its side (or resets it).
async fn until_closed(socket: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Writes `bytes` one a second, stopping as soon as the client goes away.
async fn trickle(socket: &mut TcpStream, bytes: &[u8]) {
    let (mut reader, mut writer) = socket.split();
    let writing = async {
        for b in bytes {
            if writer.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    };
    tokio::select! {
        () = writing => {}
        () = closed => {}
    }
}

/// Behaves as `kind` on `socket`; returns how long to wait before closing it.
async fn serve(kind: Hostile, socket: &mut TcpStream) -> Duration {
    if kind == Hostile::Reset {
        // Linger 0: closing sends a reset instead of a goodbye.
        #[allow(deprecated)]
        let _ = socket.set_linger(Some(Duration::ZERO));
        return Duration::ZERO;
    }
    if !read_request(socket).await {
        return Duration::ZERO;
    }
    match kind {
        Hostile::NeverAnswers => until_closed(socket).await,
        Hostile::TrickleHead => {
            trickle(socket, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await
        }
        Hostile::TrickleBody => {
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 600\r\n\r\n").await;
            trickle(socket, &[b'x'; 600]).await;
        }
        Hostile::Huge => {
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {HUGE}\r\n\r\n");
            if socket.write_all(head.as_bytes()).await.is_err() {
                return Duration::ZERO;
            }
            let block = vec![b'z'; 64 * 1024];
            for _ in 0..HUGE / block.len() {
                if socket.write_all(&block).await.is_err() {
                    return Duration::ZERO;
                }
            }
        }
        Hostile::CloseMidHead => {
            let _ = socket.write_all(b"HTTP/1.1 200 O").await;
        }
        Hostile::CloseMidBody => {
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc").await;
        }
        Hostile::RedirectToMetadata => {
            let _ = socket
                .write_all(
                    b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
            return Duration::from_millis(100);
        }
        Hostile::Healthy => {
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            // Keep-alive: answer the next requests on this connection too.
            while read_request(socket).await {
                if socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return Duration::ZERO;
                }
            }
        }
        Hostile::Reset => {}
    }
    Duration::ZERO
}

fn sender() -> Sender {
    Sender::new(SenderConfig {
        timeout: TIMEOUT,
        policy: TargetPolicy::AllowInsecure,
        ..SenderConfig::default()
    })
    .unwrap()
}

/// Peak resident memory of this process, in KiB (Linux).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_receiver_ends_within_the_timeout_with_a_clear_verdict() {
    let sender = sender();
    let peak_before = peak_rss_kib();
    for kind in ALL {
        let e = endpoint(kind).await;
        let started = Instant::now();
        let (record, verdict) = sender
            .send(Outgoing {
                url: &e.url,
                message_id: "msg_hostile",
                event: "sms",
                body: b"{}",
                secret: "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                previous_secret: None,
            })
            .await;
        let took = started.elapsed();
        assert!(took <= TIMEOUT + GRACE, "{kind:?} took {took:?}");
        let error = record.error.clone().unwrap_or_default();
        match kind {
            Hostile::NeverAnswers | Hostile::TrickleHead => {
                assert_eq!(verdict, Verdict::FAILURE, "{kind:?}");
                assert_eq!(error, "timeout after 1s", "{kind:?}");
            }
            // The status came in time; the body is read only while time is left, and at most 1 KiB.
            Hostile::TrickleBody => {
                assert_eq!(verdict, Verdict::Success);
                assert!(record.response_snippet.unwrap().len() <= 2);
                assert!(took >= TIMEOUT - Duration::from_millis(100), "{took:?}");
            }
            Hostile::Huge => {
                assert_eq!(verdict, Verdict::Success);
                assert_eq!(record.response_snippet.unwrap().len(), 1024);
            }
            Hostile::CloseMidBody => {
                assert_eq!(verdict, Verdict::Success);
                assert_eq!(record.response_snippet.as_deref(), Some("abc"));
            }
            Hostile::CloseMidHead | Hostile::Reset => {
                assert_eq!(verdict, Verdict::FAILURE, "{kind:?}");
                assert!(record.status_code.is_none(), "{kind:?}");
                assert!(!error.is_empty(), "{kind:?}");
            }
            Hostile::RedirectToMetadata => {
                assert_eq!(verdict, Verdict::FAILURE);
                assert_eq!(record.status_code, Some(302));
                assert_eq!(e.total.load(Ordering::SeqCst), 1, "not followed");
            }
            Hostile::Healthy => unreachable!(),
        }
        // Whatever it did, the connection is not kept.
        let deadline = Instant::now() + Duration::from_secs(2);
        while e.open.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "{kind:?} kept a connection open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // 100 MB went by without being held.
    let grew_mib = peak_rss_kib().saturating_sub(peak_before) / 1024;
    assert!(grew_mib < 40, "peak memory grew by {grew_mib} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_receivers_together_hold_only_their_slots_and_the_healthy_one_is_served() {
    let (store, _dir) = common::sqlite_store().await;

    let mut hostile = Vec::new();
    for kind in ALL {
        let e = endpoint(kind).await;
        let account = integration(&store, &format!("{kind:?}"), &e.url).await;
        enqueue(&store, &account, 8).await;
        hostile.push((kind, account, e));
    }
    let healthy = endpoint(Hostile::Healthy).await;
    let healthy_account = integration(&store, "healthy", &healthy.url).await;

    let cap = 3;
    let dispatcher = Dispatcher::new(
        store.clone(),
        sender(),
        DispatcherConfig {
            concurrency: 32,
            per_integration: cap,
            schedule: RetrySchedule::parse("0s", 0.0).unwrap(),
            timeout: TIMEOUT,
            ..DispatcherConfig::default()
        },
    );
    let wake = dispatcher.waker();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // While the hostile ones are busy, the healthy account's events go through.
    enqueue(&store, &healthy_account, 30).await;
    wake.notify_one();
    let deadline = Instant::now() + Duration::from_secs(20);
    while healthy.total.load(Ordering::SeqCst) == 0
        || delivered(&store, &healthy_account).await < 30
    {
        assert!(Instant::now() < deadline, "the healthy account starved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every hostile delivery ends (one attempt each), none above its cap, none past the timeout.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (kind, account, e) in &hostile {
        loop {
            let all = store.list_deliveries(account, &Default::default(), None, 100).await.unwrap();
            if all.len() == 8
                && all
                    .iter()
                    .all(|d| matches!(d.status, DeliveryStatus::Succeeded | DeliveryStatus::Failed))
            {
                for d in &all {
                    for a in store.list_attempts(&d.id).await.unwrap() {
                        assert!(
                            a.duration_ms <= (TIMEOUT + GRACE).as_millis() as i64,
                            "{kind:?}: an attempt took {} ms",
                            a.duration_ms
                        );
                    }
                }
                break;
            }
            assert!(Instant::now() < deadline, "{kind:?} did not finish: {all:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let most = e.most.load(Ordering::SeqCst);
        assert!(most <= cap, "{kind:?} held {most} connections, cap {cap}");
    }
    // The dispatcher is still running and still delivers.
    assert!(!running.is_finished());
    enqueue(&store, &healthy_account, 1).await;
    wake.notify_one();
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered(&store, &healthy_account).await < 31 {
        assert!(Instant::now() < deadline, "the dispatcher stopped delivering");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}

async fn delivered(store: &Arc<dyn Store>, account: &AccountId) -> usize {
    store
        .list_deliveries(account, &Default::default(), None, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|d| d.status == DeliveryStatus::Succeeded)
        .count()
}
