//! What only the SQLite backend does: its files on disk, and a full disk.

use sipsim_core::store::{Accounts as _, DeliveryQueue as _, Health as _};
use std::os::unix::fs::PermissionsExt;

use sipsim_core::queue::{AttemptRecord, Completion, FinishedAttempt, NewMessage, Shares};
use sipsim_core::{Event, StoreError};
use sipsim_store::SqliteStore;
use sqlx::Connection;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_database_and_its_wal_and_shm_files_are_private_to_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sipsim.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
    store.migrate().await.unwrap();
    // A write, so the WAL and its index exist.
    store.create_account("Acme").await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("sipsim.db{suffix}"));
        assert!(file.exists(), "{} exists", file.display());
        assert_eq!(mode(&file), 0o600, "{} is 0600", file.display());
    }
    store.close().await;
}

/// Messages of `account` with bodies of `bytes` each (the store does not read them).
fn messages(account: &sipsim_core::AccountId, n: usize, bytes: usize) -> Vec<NewMessage> {
    (0..n)
        .map(|_| NewMessage {
            account_id: account.clone(),
            event: Event::Sms,
            body: vec![b'x'; bytes],
            ordering_key: None,
            idempotency_key: None,
        })
        .collect()
}

fn is_full<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::StorageFull(_)))
}

#[tokio::test]
async fn a_full_database_refuses_writes_whole_and_recovers_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("full.db").display());
    // The database may not grow past 2 MiB, as if it were on a small disk.
    let store = SqliteStore::open_capped(&url, Some(2 << 20)).await.unwrap();
    store.migrate().await.unwrap();
    let account =
        sipsim_store::testing::account_with_integration(&store, "Acme", "https://example.com/h")
            .await;
    // Some deliveries in flight, to complete while the database is full.
    store.ingest(&messages(&account, 20, 100), 1_000).await.unwrap();
    let in_flight = store.claim_due(1_000, 20, 600_000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(in_flight.len(), 20);
    // Something an operator can delete later to free space.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE ballast (b BLOB)").execute(&mut other).await.unwrap();
    sqlx::query("INSERT INTO ballast VALUES (zeroblob(512 * 1024))")
        .execute(&mut other)
        .await
        .unwrap();

    // Ingest until the database is full: big batches, then smaller ones into what is left.
    let mut stored = 0;
    let mut full = None;
    for batch in [50, 5, 1] {
        loop {
            match store.ingest(&messages(&account, batch, 2_000), 2_000).await {
                Ok(_) => stored += batch,
                Err(e) => {
                    full = Some(e);
                    break;
                }
            }
            assert!(stored < 10_000, "never full");
        }
    }
    let full = full.unwrap();
    assert!(matches!(full, StoreError::StorageFull(_)), "{full:?}");
    let messages_before = count(&mut other, "messages").await;

    // From now on every write says the same — never "transaction depth" — and stores nothing half.
    for _ in 0..3 {
        let again = store.ingest(&messages(&account, 50, 2_000), 3_000).await;
        assert!(is_full(&again), "{again:?}");
    }
    assert!(is_full(&store.write_probe().await));
    let finished: Vec<FinishedAttempt> = in_flight
        .iter()
        .map(|c| FinishedAttempt {
            id: c.id.clone(),
            lease_token: c.lease_token.clone(),
            record: AttemptRecord {
                started_at_ms: 4_000,
                duration_ms: 5,
                status_code: Some(200),
                error: None,
                response_snippet: Some("ok ".repeat(300)),
            },
            completion: Completion::Succeeded,
        })
        .collect();
    let completed = store.complete(&finished).await;
    assert!(completed.is_ok() || is_full(&completed), "{completed:?}");
    let claimed = store.claim_due(4_000, 100, 600_000, &Shares::UNLIMITED).await;
    assert!(claimed.is_ok() || is_full(&claimed), "{claimed:?}");
    if let Ok(c) = &claimed {
        store
            .unclaim(
                &c.iter().map(|d| (d.id.clone(), d.lease_token.clone())).collect::<Vec<_>>(),
                4_000,
            )
            .await
            .unwrap();
    }
    assert_eq!(count(&mut other, "messages").await, messages_before, "nothing half-stored");

    // The operator frees space: the same store, without a restart, writes again.
    sqlx::query("DROP TABLE ballast").execute(&mut other).await.unwrap();
    store.write_probe().await.unwrap();
    store.ingest(&messages(&account, 50, 2_000), 5_000).await.unwrap();
    let claimed = store.claim_due(5_000, 10, 600_000, &Shares::UNLIMITED).await.unwrap();
    assert!(!claimed.is_empty());
    let done = store
        .complete(
            &claimed
                .iter()
                .map(|c| FinishedAttempt {
                    id: c.id.clone(),
                    lease_token: c.lease_token.clone(),
                    record: AttemptRecord {
                        started_at_ms: 5_000,
                        duration_ms: 5,
                        status_code: Some(200),
                        error: None,
                        response_snippet: None,
                    },
                    completion: Completion::Succeeded,
                })
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    assert!(done.applied.iter().all(|d| *d));
    store.close().await;
}

async fn count(conn: &mut sqlx::SqliteConnection, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .unwrap()
}
