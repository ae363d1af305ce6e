//! What several nodes on one PostgreSQL database need beyond the conformance suite: each test opens
//! two `PgStore`s (two connection pools, as two `sipsimd` processes would have) on one fresh database
//! and makes them race.

use sipsim_core::store::{Clients as _, Cluster as _, DeliveryQueue as _, Integrations as _};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipsim_core::queue::{
    AttemptRecord, Completion, FinishedAttempt, IngestOutcome, NewMessage, Shares,
};
use sipsim_core::store::Signal;
use sipsim_core::{AccountId, Event, ScopeSet, Store};
use sipsim_store::PgStore;
use sipsim_store::testing::{self, PgTestDb, postgres_empty_db, postgres_test_db};

async fn two_nodes(db: &PgTestDb) -> (Arc<PgStore>, Arc<PgStore>) {
    let a = PgStore::open(db.url(), 8).await.unwrap();
    let b = PgStore::open(db.url(), 8).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

async fn account_with_integration(store: &dyn Store) -> AccountId {
    testing::account_with_integration(store, "nodes", "https://example.com/").await
}

fn msg(
    acc: &AccountId,
    ordering_key: Option<String>,
    idempotency_key: Option<String>,
) -> NewMessage {
    NewMessage {
        account_id: acc.clone(),
        event: Event::Sms,
        body: b"{}".to_vec(),
        ordering_key,
        idempotency_key,
    }
}

fn ok_record(at: i64) -> AttemptRecord {
    AttemptRecord {
        started_at_ms: at,
        duration_ms: 1,
        status_code: Some(200),
        error: None,
        response_snippet: None,
    }
}

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let Some(db) = postgres_empty_db("nodes_starting_together_migrate_once").await else {
        return;
    };
    let (a, b) = two_nodes(&db).await;
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    // Both see the whole schema.
    let acc = account_with_integration(&*a).await;
    assert!(b.get_integration(&acc).await.unwrap().is_some());
    a.close().await;
    b.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn concurrent_claims_never_take_a_delivery_twice() {
    let Some(db) = postgres_test_db("concurrent_claims_never_take_a_delivery_twice").await else {
        return;
    };
    let (a, b) = two_nodes(&db).await;
    let now = 1_000_000;
    let acc = account_with_integration(&*a).await;
    let batch: Vec<NewMessage> = (0..2000).map(|_| msg(&acc, None, None)).collect();
    a.ingest(&batch, now).await.unwrap();
    // Four claimers per node, claiming in small batches until nothing is left.
    let claimed: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store: Arc<dyn Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
        let claimed = claimed.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let got = store.claim_due(now, 25, 60_000, &Shares::UNLIMITED).await.unwrap();
                if got.is_empty() {
                    break;
                }
                claimed.lock().unwrap().extend(got.into_iter().map(|c| c.id.as_str().to_owned()));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let claimed = claimed.lock().unwrap().clone();
    let distinct: HashSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), 2000, "every delivery claimed");
    assert_eq!(distinct.len(), 2000, "none claimed twice");
    a.close().await;
    b.close().await;
    db.drop_database().await;
}

/// Two nodes append to the same calls while two others deliver them: every call's deliveries are
/// numbered without gaps in commit order, go out strictly one at a time in that order, and none is
/// left waiting at the end (a finished delivery always releases the one after it, even one
/// committed by another node at the same moment).
#[tokio::test]
async fn chains_stay_ordered_and_never_stall_across_nodes() {
    let Some(db) = postgres_test_db("chains_stay_ordered_and_never_stall_across_nodes").await
    else {
        return;
    };
    let (a, b) = two_nodes(&db).await;
    let acc = account_with_integration(&*a).await;
    const CALLS: usize = 4;
    const PER_NODE: usize = 60;
    let start = sipsim_core::clock::now_ms();
    let ingesters: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            let acc = acc.clone();
            tokio::spawn(async move {
                for i in 0..PER_NODE {
                    let key = format!("call_{}", i % CALLS);
                    store
                        .ingest(&[msg(&acc, Some(key), None)], sipsim_core::clock::now_ms())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    // Sequence numbers per call, in the order the deliverers sent them.
    let probe = sqlx::PgPool::connect(db.url()).await.unwrap();
    let sent: Arc<Mutex<HashMap<String, Vec<i64>>>> = Arc::default();
    let total = 2 * PER_NODE;
    let deliverers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            let sent = sent.clone();
            let probe = probe.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                loop {
                    let done: usize = sent.lock().unwrap().values().map(Vec::len).sum();
                    if done == total || tokio::time::Instant::now() > deadline {
                        break;
                    }
                    let now = sipsim_core::clock::now_ms();
                    let claimed =
                        store.claim_due(now, 8, 60_000, &Shares::UNLIMITED).await.unwrap();
                    if claimed.is_empty() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        continue;
                    }
                    // A claim brings trains: a call's events are sent in their chain order, as
                    // the dispatcher sends them.
                    let mut claimed = claimed;
                    claimed.sort_by_key(|c| c.chain.as_ref().map(|l| (l.key.clone(), l.seq)));
                    let mut finished = Vec::new();
                    for c in claimed {
                        let (key, seq) = chain_position(&probe, c.id.as_str()).await;
                        sent.lock().unwrap().entry(key).or_default().push(seq);
                        finished.push(FinishedAttempt {
                            id: c.id,
                            lease_token: c.lease_token,
                            record: ok_record(now),
                            completion: Completion::Succeeded,
                        });
                    }
                    assert!(store.complete(&finished).await.unwrap().applied.iter().all(|ok| *ok));
                }
            })
        })
        .collect();
    for t in ingesters {
        t.await.unwrap();
    }
    for t in deliverers {
        t.await.unwrap();
    }
    let sent = sent.lock().unwrap().clone();
    let done: usize = sent.values().map(Vec::len).sum();
    assert_eq!(done, total, "every delivery went out; none stalled");
    for (key, seqs) in sent.iter() {
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, &expected, "{key}: sent in sequence order, numbered without gaps");
    }
    eprintln!(
        "{total} chained deliveries through two nodes in {} ms",
        sipsim_core::clock::now_ms() - start
    );
    probe.close().await;
    a.close().await;
    b.close().await;
    db.drop_database().await;
}

/// The ordering key and sequence number of a delivery, read straight from the database (the trait
/// does not expose them).
async fn chain_position(probe: &sqlx::PgPool, id: &str) -> (String, i64) {
    sqlx::query_as("SELECT ordering_key, seq FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_one(probe)
        .await
        .unwrap()
}

#[tokio::test]
async fn one_idempotency_key_from_two_nodes_is_stored_once() {
    let Some(db) = postgres_test_db("one_idempotency_key_from_two_nodes_is_stored_once").await
    else {
        return;
    };
    let (a, b) = two_nodes(&db).await;
    let acc = account_with_integration(&*a).await;
    let now = sipsim_core::clock::now_ms();
    for round in 0..20 {
        let key = Some(format!("k{round}"));
        let (batch_a, batch_b) = ([msg(&acc, None, key.clone())], [msg(&acc, None, key.clone())]);
        let (ra, rb) = tokio::join!(a.ingest(&batch_a, now), b.ingest(&batch_b, now));
        let outcomes = [ra.unwrap().remove(0), rb.unwrap().remove(0)];
        let enqueued =
            outcomes.iter().filter(|o| matches!(o, IngestOutcome::Enqueued { .. })).count();
        let duplicates =
            outcomes.iter().filter(|o| matches!(o, IngestOutcome::Duplicate { .. })).count();
        assert_eq!((enqueued, duplicates), (1, 1), "round {round}: {outcomes:?}");
    }
    a.close().await;
    b.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn writes_on_one_node_signal_the_other() {
    let Some(db) = postgres_test_db("writes_on_one_node_signal_the_other").await else {
        return;
    };
    let (a, b) = two_nodes(&db).await;
    let acc = account_with_integration(&*a).await;
    let signals: Arc<Mutex<Vec<Signal>>> = Arc::default();
    let watcher = {
        let b = b.clone();
        let signals = signals.clone();
        tokio::spawn(async move {
            let push = |s: Signal| signals.lock().unwrap().push(s);
            b.watch(&push).await
        })
    };
    // Give LISTEN a moment to be in place.
    let wait_for = |want: Signal| {
        let signals = signals.clone();
        async move {
            for _ in 0..200 {
                if signals.lock().unwrap().contains(&want) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.ingest(&[msg(&acc, None, None)], sipsim_core::clock::now_ms()).await.unwrap();
    assert!(wait_for(Signal::Due).await, "ingest on A wakes B");
    let (client, _) = testing::api_client(&*a, &acc, ScopeSet::empty()).await;
    a.delete_client(&client.id).await.unwrap();
    assert!(wait_for(Signal::Revoked).await, "a deletion on A reaches B");
    watcher.abort();
    a.close().await;
    b.close().await;
    db.drop_database().await;
}

/// A queue that grew from nothing gets planner statistics without autovacuum (this machine's
/// PostgreSQL runs with it off): the nodes analyze what changed, one node at a time, and only then.
#[tokio::test]
async fn nodes_keep_the_planner_statistics_of_a_growing_queue() {
    let Some(db) = postgres_test_db("nodes_keep_the_planner_statistics_of_a_growing_queue").await
    else {
        return;
    };
    let (a, b) = two_nodes(&db).await;
    let acc = account_with_integration(&*a).await;
    let batch: Vec<NewMessage> = (0..2000).map(|_| msg(&acc, None, None)).collect();
    a.ingest(&batch, 1_000_000).await.unwrap();
    let probe = sqlx::PgPool::connect(db.url()).await.unwrap();
    let estimate = || async {
        sqlx::query_scalar::<_, f32>("SELECT reltuples FROM pg_class WHERE relname = 'deliveries'")
            .fetch_one(&probe)
            .await
            .unwrap()
    };
    // The servers' activity counters reach the statistics collector within a second or so.
    let mut analyzed = Vec::new();
    for _ in 0..100 {
        analyzed = a.refresh_planner_statistics().await.unwrap();
        if !analyzed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        analyzed.iter().any(|t| t == "deliveries") && analyzed.iter().any(|t| t == "messages"),
        "{analyzed:?}"
    );
    assert_eq!(estimate().await, 2000.0, "the planner now knows the table");
    assert_eq!(
        b.refresh_planner_statistics().await.unwrap(),
        Vec::<String>::new(),
        "nothing changed since"
    );
    probe.close().await;
    a.close().await;
    b.close().await;
    db.drop_database().await;
}
