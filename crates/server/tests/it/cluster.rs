//! Several nodes on one PostgreSQL database: two `sipsimd serve` processes and one receiver; 5,000
//! call events ingested through both; one node killed with `kill -9` in the middle. Every event must
//! arrive at least once, no delivery may be in flight from two nodes at once, and each call's events
//! must arrive in order. Prints the duplicates and the time from the kill to full recovery.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Fetch, Server, operator};
use crate::process::{SUCCEEDED, argv, until_count};

const KEY: &str = "cluster-test-ingest-key-0123";

/// Each call's events, in the order they happen (and must arrive); all ordered by `pbx_id`.
const LIFECYCLE: [&str; 5] = [
    "incoming_call_start",
    "incoming_call_start_chain_member_call",
    "incoming_call_answer",
    "incoming_call_end_chain_member_call",
    "incoming_call_end",
];
const CALLS: usize = 1000;
const ACCOUNTS: usize = 4;

fn node(db_url: &str) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipsimd"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--retry-jitter", "0"])
        .args(["--retry-schedule", "0s,200ms,500ms,1s,1s,1s,1s,1s"])
        .args(["--delivery-timeout", "1s"])
        .env("SIPSIM_DATABASE_URL", db_url)
        .env("SIPSIM_INGEST_KEY", KEY)
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1");
    Server::spawn(cmd)
}

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Every arrival: (message id, pbx_id, event, arrival number).
    arrivals: Vec<(String, String, String, u64)>,
    /// Requests being answered right now, by message id.
    in_flight: HashMap<String, u32>,
    /// Message ids that arrived while an earlier request of theirs was still in flight.
    overlaps: Vec<String>,
}

/// Ends an arrival's in-flight mark however its request ends (answered, or the sender died).
struct InFlight(Arc<Mutex<Seen>>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = seen.in_flight.get_mut(&self.1) {
            *n -= 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_kill_9_one_loses_nothing_and_keeps_order() {
    let Some(db) = sipsim_store::testing::postgres_test_db("two_nodes_kill_9").await else {
        return;
    };
    let url = db.url().to_owned();

    // The receiver answers after 50 ms, so that many deliveries are in flight when a node dies.
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let clock = Arc::new(AtomicU64::new(0));
    let (record, tick) = (seen.clone(), clock.clone());
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let (record, tick) = (record.clone(), tick.clone());
        async move {
            let id = headers
                .get("x-webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
            let pbx = payload["pbx_id"].as_str().unwrap_or_default().to_owned();
            let event = payload["event"].as_str().unwrap_or_default().to_owned();
            let _guard = {
                let mut seen = record.lock().unwrap();
                let n = seen.in_flight.entry(id.clone()).or_default();
                *n += 1;
                if *n > 1 {
                    seen.overlaps.push(id.clone());
                }
                let at = tick.fetch_add(1, Ordering::SeqCst);
                seen.arrivals.push((id.clone(), pbx, event, at));
                InFlight(record.clone(), id)
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let accounts: Vec<String> = (0..ACCOUNTS)
        .map(|i| {
            let account =
                operator(&url, &["account", "create", &format!("Cluster {i}")])["account_id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            let events = LIFECYCLE.join(",");
            operator(
                &url,
                argv!("integration set --account {account} --url {receiver} --events {events}"),
            );
            account
        })
        .collect();

    let a = node(&url);
    let b = node(&url);
    let http = crate::helpers::http();

    // Round r sends event r of every call, in batches of 100 calls alternating between the nodes
    // (so a call's events go through both); a round starts when the previous one is committed.
    // Node A is killed with `kill -9` as soon as a third of the events have arrived, in the middle
    // of ingesting and delivering; from then on every batch goes to B, as a load balancer would
    // send it. A batch whose request to A died is sent again to B: its idempotency keys make that
    // safe whether or not A had committed it.
    let total = CALLS * LIFECYCLE.len();
    let distinct = |seen: &Seen| {
        seen.arrivals.iter().map(|(id, ..)| id.as_str()).collect::<HashSet<_>>().len()
    };
    let started = Instant::now();
    // A watcher kills A the moment a third has arrived and at least 8 attempts are in flight at the
    // receiver: looking only between ingest requests could miss every such moment when delivery
    // keeps up with ingest.
    let a = Arc::new(Mutex::new(Some(a)));
    let killed: Arc<Mutex<Option<(Instant, usize)>>> = Arc::default();
    let watcher = {
        let (a, killed, seen) = (a.clone(), killed.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                // Arrivals counted cheaply (before the kill nothing is sent twice).
                let (arrived, in_flight) = {
                    let seen = seen.lock().unwrap();
                    (seen.arrivals.len(), seen.in_flight.values().sum::<u32>())
                };
                if arrived >= total / 3 && in_flight >= 8 {
                    if let Some(mut node) = a.lock().unwrap().take() {
                        node.child.kill().unwrap(); // SIGKILL
                        node.child.wait().unwrap();
                    }
                    let at_kill = distinct(&seen.lock().unwrap());
                    *killed.lock().unwrap() = Some((Instant::now(), at_kill));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut accepted = HashSet::new();
    let mut resent_batches = 0;
    for (round, event) in LIFECYCLE.iter().enumerate() {
        let mut example: Value = serde_json::from_str(sipsim_core::payload::example_json(
            sipsim_core::Event::from_name(event).unwrap(),
        ))
        .unwrap();
        let batches: Vec<Vec<Value>> = (0..CALLS / 100)
            .map(|batch| {
                (batch * 100..(batch + 1) * 100)
                    .map(|call| {
                        example["pbx_id"] = json!(format!("call_{call:05}"));
                        json!({
                            "account_id": accounts[call % ACCOUNTS],
                            "event": event,
                            "payload": example.clone(),
                            "idempotency_key": format!("call_{call:05}/{event}"),
                        })
                    })
                    .collect()
            })
            .collect();
        let posts: Vec<_> = batches
            .iter()
            .enumerate()
            .map(|(i, items)| {
                let to_a = (i + round) % 2 == 0;
                let a_base = a.lock().unwrap().as_ref().map(|node| node.base.clone());
                let base = match (a_base, to_a) {
                    (Some(a_base), true) => a_base,
                    _ => b.base.clone(),
                };
                let post = http
                    .post(format!("{base}/internal/v1/events"))
                    .bearer_auth(KEY)
                    .json(items)
                    .send();
                (items, post)
            })
            .collect();
        for (items, post) in posts {
            let resp = match post.await {
                Ok(resp) => resp,
                Err(_) => {
                    resent_batches += 1;
                    http.post(format!("{}/internal/v1/events", b.base))
                        .bearer_auth(KEY)
                        .json(items)
                        .fetch()
                        .await
                }
            };
            assert_eq!(resp.status(), 202);
            let body: Value = resp.json().await.unwrap();
            for r in body["data"].as_array().unwrap() {
                assert!(r["enqueued"] == true || r["duplicate"] == true, "{r}");
                accepted.insert(r["message_id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(accepted.len(), total);
    let ingested_in = started.elapsed();
    // The watcher fires while the last events are still being delivered, at the latest.
    let fired = tokio::time::timeout(Duration::from_secs(30), watcher).await;
    assert!(fired.is_ok(), "A was never killed with attempts in flight");
    let Some((killed_at, at_kill)) = *killed.lock().unwrap() else {
        unreachable!("the watcher records the kill before it returns")
    };
    assert!(at_kill < total, "everything was delivered before the kill; the test proved nothing");

    // Done means the database records every delivery as succeeded.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let succeeded = until_count(total as i64, Duration::from_secs(120), async || {
        sqlx::query_scalar(SUCCEEDED).fetch_one(&mut conn).await.unwrap()
    })
    .await;
    let recovered_in = killed_at.elapsed();
    conn.close().await.unwrap();
    drop(b);

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut count: HashMap<&str, u32> = HashMap::new();
    for (id, ..) in &seen.arrivals {
        *count.entry(id.as_str()).or_default() += 1;
    }
    let duplicates: u32 = count.values().map(|n| n - 1).sum();
    println!(
        "two-node test: {total} events ingested through 2 nodes in {ingested_in:.2?} \
         ({resent_batches} batches re-sent to B after A died); {at_kill} delivered when node A got \
         kill -9; {} delivered in all, {duplicates} duplicate deliveries (attempts the dead node \
         had in flight); all recorded succeeded {recovered_in:.2?} after the kill (leases last \
         2 × timeout + 10 s = 12 s)",
        count.len()
    );
    let missing = accepted.iter().filter(|id| !count.contains_key(id.as_str())).count();
    assert_eq!(missing, 0, "accepted events that never arrived");
    assert_eq!(succeeded, total as i64, "deliveries recorded as succeeded");
    assert!(seen.overlaps.is_empty(), "sent by two nodes at once: {:?}", seen.overlaps);
    // Per call: every arrival of event k (retries included) comes before any arrival of event k+1.
    let mut calls: HashMap<&str, Vec<(usize, u64)>> = HashMap::new();
    for (_, pbx, event, at) in &seen.arrivals {
        let k = LIFECYCLE.iter().position(|e| e == event).unwrap();
        calls.entry(pbx.as_str()).or_default().push((k, *at));
    }
    assert_eq!(calls.len(), CALLS);
    for (pbx, mut arrivals) in calls {
        arrivals.sort_by_key(|(_, at)| *at);
        let order: Vec<usize> = arrivals.iter().map(|(k, _)| *k).collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "{pbx}: events arrived out of order: {order:?}"
        );
    }
    db.drop_database().await;
}
