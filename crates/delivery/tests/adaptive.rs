//! Adaptive per-endpoint concurrency with a real dispatcher, a real database and real HTTP: an
//! endpoint that stops answering is brought down to one request at a time and grows back to the
//! cap once it answers again, while a healthy endpoint beside it keeps the cap — and a machine
//! whose CPUs are all busy does not shrink a healthy endpoint's slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use sipsim_core::retry::RetrySchedule;
use sipsim_core::target::TargetPolicy;
use sipsim_core::{AccountId, Store};
use sipsim_delivery::{ConcurrencyLimits, Dispatcher, DispatcherConfig, Sender, SenderConfig};
use tokio_util::sync::CancellationToken;

mod common;

const TIMEOUT: Duration = Duration::from_millis(400);
const CAP: usize = 8;

/// A receiver that answers 200 (after `answer_ms`), or — while `hanging` — not before the sender's timeout,
/// or — while `failing` — 503 after most of the timeout. It counts requests in progress and the most
/// at once since the count was last reset.
#[derive(Clone, Default)]
struct Endpoint {
    hanging: Arc<AtomicBool>,
    failing: Arc<AtomicBool>,
    /// How long a 200 takes, ms.
    answer_ms: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

/// Counts a request as over when its handler ends or is dropped.
struct Closing(Arc<AtomicUsize>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn receive(State(e): State<Endpoint>) -> StatusCode {
    let now = e.open.fetch_add(1, Ordering::SeqCst) + 1;
    e.most.fetch_max(now, Ordering::SeqCst);
    // The server drops this future when the sender gives up and closes the connection.
    let _open = Closing(e.open.clone());
    let status = if e.hanging.load(Ordering::SeqCst) {
        tokio::time::sleep(TIMEOUT * 3).await;
        StatusCode::OK
    } else if e.failing.load(Ordering::SeqCst) {
        tokio::time::sleep(TIMEOUT * 3 / 4).await;
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        let ms = e.answer_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        StatusCode::OK
    };
    e.answered.fetch_add(1, Ordering::SeqCst);
    status
}

async fn start(endpoint: &Endpoint) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().fallback(receive).with_state(endpoint.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

struct Node {
    store: Arc<dyn Store>,
    limits: ConcurrencyLimits,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn node() -> Node {
    let (store, dir) = common::sqlite_store().await;
    let sender = Sender::new(SenderConfig {
        timeout: TIMEOUT,
        policy: TargetPolicy::AllowInsecure,
        ..SenderConfig::default()
    })
    .unwrap();
    let dispatcher = Dispatcher::new(
        store.clone(),
        sender,
        DispatcherConfig {
            concurrency: 64,
            per_integration: CAP,
            // Many quick retries, so a hanging endpoint keeps being tried.
            schedule: RetrySchedule::parse(&vec!["50ms"; 40].join(","), 0.0).unwrap(),
            timeout: TIMEOUT,
            ..DispatcherConfig::default()
        },
    );
    let limits = dispatcher.limits();
    let wake = dispatcher.waker();
    let shutdown = CancellationToken::new();
    tokio::spawn(dispatcher.run(shutdown.clone()));
    Node { store, limits, wake, shutdown, _dir: dir }
}

async fn integration(node: &Node, name: &str, url: &str) -> AccountId {
    common::integration(&node.store, name, url).await
}

async fn enqueue(node: &Node, account: &AccountId, n: usize) {
    common::enqueue(&node.store, account, n).await;
    node.wake.notify_one();
}

/// Waits until `done` holds, or fails with `what` after `within`.
async fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_in_trouble_is_brought_down_to_one_slot_and_grows_back_when_it_answers() {
    let node = node().await;
    let troubled = Endpoint::default();
    let healthy = Endpoint::default();
    let troubled_account = integration(&node, "troubled", &start(&troubled).await).await;
    let healthy_account = integration(&node, "healthy", &start(&healthy).await).await;
    // Steadily 20 ms: enough for its backlog to keep all its slots busy.
    healthy.answer_ms.store(20, Ordering::SeqCst);

    troubled.hanging.store(true, Ordering::SeqCst);
    enqueue(&node, &troubled_account, 200).await;
    // It starts at the cap: that many requests at once, before the first times out.
    until(TIMEOUT, "it did not start at the cap", || troubled.open.load(Ordering::SeqCst) == CAP)
        .await;
    until(Duration::from_secs(15), "the limit never fell to 1", || {
        node.limits.limit(&troubled_account) == 1
    })
    .await;
    // Now it fails slowly instead (a 503 after most of the timeout). Once the requests started
    // before the last cut have timed out, one at a time.
    troubled.failing.store(true, Ordering::SeqCst);
    troubled.hanging.store(false, Ordering::SeqCst);
    tokio::time::sleep(TIMEOUT + Duration::from_millis(200)).await;
    troubled.most.store(troubled.open.load(Ordering::SeqCst), Ordering::SeqCst);
    // Meanwhile the healthy endpoint keeps the cap and is served.
    enqueue(&node, &healthy_account, 400).await;
    until(Duration::from_secs(15), "the healthy endpoint starved", || {
        healthy.answered.load(Ordering::SeqCst) >= 400
    })
    .await;
    tokio::time::sleep(TIMEOUT * 3).await;
    assert_eq!(node.limits.limit(&troubled_account), 1);
    assert_eq!(
        troubled.most.load(Ordering::SeqCst),
        1,
        "a failing endpoint held more than one slot after its limit fell to 1"
    );
    assert_eq!(node.limits.limit(&healthy_account), CAP as u32);
    assert_eq!(healthy.most.load(Ordering::SeqCst), CAP);

    // It answers again: its limit grows back to the cap as its backlog drains.
    troubled.failing.store(false, Ordering::SeqCst);
    until(Duration::from_secs(30), "the limit never grew back", || {
        node.limits.limit(&troubled_account) == CAP as u32
    })
    .await;
    assert!(node.limits.lowered().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_machine_does_not_shrink_a_healthy_endpoints_slots() {
    let node = node().await;
    let healthy = Endpoint::default();
    let account = integration(&node, "healthy", &start(&healthy).await).await;
    healthy.answer_ms.store(30, Ordering::SeqCst);
    // A baseline while the machine is quiet.
    enqueue(&node, &account, 200).await;
    until(Duration::from_secs(15), "the baseline was not delivered", || {
        healthy.answered.load(Ordering::SeqCst) >= 200
    })
    .await;

    // Then the node is busy: its runtime's workers spend most of their time on other work (as on a
    // machine whose CPUs are saturated), so answers are read late — 30 ms answers are seen as
    // taking hundreds — and not by the endpoint's fault. And a burst.
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    while began.elapsed() < Duration::from_millis(150) {
                        std::hint::spin_loop();
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    enqueue(&node, &account, 300).await;
    let lowest = Arc::new(AtomicUsize::new(CAP));
    let watch = {
        let (limits, account, lowest) = (node.limits.clone(), account.clone(), lowest.clone());
        tokio::spawn(async move {
            loop {
                lowest.fetch_min(limits.limit(&account) as usize, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let delivered = until(Duration::from_secs(60), "the burst was not delivered", || {
        healthy.answered.load(Ordering::SeqCst) >= 500
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for h in hogs {
        h.await.unwrap();
    }
    watch.abort();
    let () = delivered;
    assert_eq!(
        lowest.load(Ordering::SeqCst),
        CAP,
        "a healthy endpoint lost slots because the machine was busy"
    );
}
