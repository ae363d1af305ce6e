//! `sipsimd backup PATH`: a consistent copy of a SQLite database taken while the server runs and
//! delivers, from which a server starts with every event accepted before the backup began.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Fetch, Server, operator_account_with_integration};
use crate::process::succeeded;
use sipsim_testkit::receiver::Receiver;

const KEY: &str = "backup-test-ingest-key-0123";

/// When an ingest request's 202 came back, and the message ids it gave.
type Accepted = (Instant, Vec<String>);

fn serve(db: &str) -> Server {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sipsimd"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("SIPSIM_DATABASE_URL", db)
        .env("SIPSIM_INGEST_KEY", KEY)
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1");
    Server::spawn(cmd)
}

/// Deliveries of `messages` in the database at `db` whose status is not one of `statuses`.
async fn deliveries_not(db: &str, messages: &[String], statuses: &[&str]) -> Vec<(String, String)> {
    let mut conn = sqlx::SqliteConnection::connect(db).await.unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT message_id, status FROM deliveries")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let present: std::collections::HashSet<&String> = rows.iter().map(|(m, _)| m).collect();
    let mut wrong: Vec<(String, String)> = messages
        .iter()
        .filter(|m| !present.contains(m))
        .map(|m| (m.clone(), "missing".to_owned()))
        .collect();
    let wanted: std::collections::HashSet<&String> = messages.iter().collect();
    wrong.extend(
        rows.into_iter().filter(|(m, s)| wanted.contains(m) && !statuses.contains(&s.as_str())),
    );
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_holds_every_event_accepted_before_it_began() {
    // What the server delivered before the copy is `succeeded` in it; the rest must be due.
    let receiver = Receiver::answering(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("live.db").display());
    let account = operator_account_with_integration(&db, "Acme", &receiver.url("/hook"), "sms");
    let server = serve(&db);

    // Load: batches of 100 events, each remembered with when its 202 came back.
    let accepted: Arc<Mutex<Vec<Accepted>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (accepted, stop, base, account) =
            (accepted.clone(), stop.clone(), server.base.clone(), account.clone());
        tokio::spawn(async move {
            let http = crate::helpers::http();
            let sms: Value =
                serde_json::from_str(sipsim_core::payload::example_json(sipsim_core::Event::Sms))
                    .unwrap();
            let batch: Vec<Value> = (0..100)
                .map(|_| json!({ "account_id": account, "event": "sms", "payload": sms }))
                .collect();
            while !stop.load(Ordering::SeqCst) {
                let r = http
                    .post(format!("{base}/internal/v1/events"))
                    .bearer_auth(KEY)
                    .json(&batch)
                    .fetch()
                    .await;
                assert_eq!(r.status(), 202);
                let body: Value = r.json().await.unwrap();
                let ids = body["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["message_id"].as_str().unwrap().to_owned())
                    .collect();
                accepted.lock().unwrap().push((Instant::now(), ids));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let copy = dir.path().join("backup.db");
    let began = Instant::now();
    succeeded(
        std::process::Command::new(env!("CARGO_BIN_EXE_sipsimd"))
            .args(["backup", copy.to_str().unwrap(), "--json"])
            .env("SIPSIM_DATABASE_URL", &db)
            .output(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
    let before: Vec<String> = accepted
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at < began)
        .flat_map(|(_, ids)| ids.clone())
        .collect();
    let after = accepted.lock().unwrap().iter().filter(|(at, _)| *at > began).count();
    assert!(before.len() >= 200, "load before the backup: {}", before.len());
    assert!(after > 0, "the load went on during the backup");
    drop(server);

    // In the copy, every event accepted before the backup began is there, delivered or due.
    let copy_url = format!("sqlite://{}", copy.display());
    let missing = deliveries_not(&copy_url, &before, &["succeeded", "pending", "delivering"]).await;
    assert!(
        missing.is_empty(),
        "{} not in the copy: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // A server started on the copy delivers what was due.
    let restored = serve(&copy_url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deliveries_not(&copy_url, &before, &["succeeded"]).await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{} never delivered from the copy", left.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(restored);
    // A second backup to the same file is refused: it never overwrites.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipsimd"))
        .args(["backup", copy.to_str().unwrap()])
        .env("SIPSIM_DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
}

#[test]
fn backup_on_postgres_points_to_its_own_tools() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipsimd"))
        .args(["backup", "/tmp/never-written.db"])
        .env("SIPSIM_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}
