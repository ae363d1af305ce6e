//! A database that cannot grow: ingest answers 503 (nothing half-stored), `/readyz` says so, and
//! the node recovers by itself once space is freed — on SQLite as an operator meets it (the real
//! binary on a capped file), and on PostgreSQL for a commit that fails with `disk_full`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Fetch, Server, TestApp, operator, operator_account_with_integration};
use sipsim_testkit::receiver::Receiver;

const KEY: &str = "storage-test-ingest-key-012";

fn sms() -> Value {
    serde_json::from_str(sipsim_core::payload::example_json(sipsim_core::Event::Sms)).unwrap()
}

/// Posts `items` to the ingest route at `base`; the status, `Retry-After` and body.
async fn ingest(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    items: &Value,
) -> (StatusCode, Option<String>, Value) {
    let r =
        http.post(format!("{base}/internal/v1/events")).bearer_auth(key).json(items).fetch().await;
    let status = r.status();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

async fn readyz(http: &reqwest::Client, base: &str) -> (StatusCode, Value) {
    let r = http.get(format!("{base}/readyz")).fetch().await;
    (r.status(), r.json().await.unwrap())
}

fn assert_storage_full(status: StatusCode, retry: Option<String>, body: &Value) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(retry.as_deref(), Some("30"));
    assert_eq!(body["status"], 503);
    assert_eq!(body["errors"][0], sipsim_server::error::STORAGE_FULL_MESSAGE, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_database_answers_503_and_recovers_once_space_is_freed() {
    let receiver = Receiver::answering(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("small.db").display());
    let ballast =
        operator(&db, &["account", "create", "Ballast"])["account_id"].as_str().unwrap().to_owned();
    let acme = operator_account_with_integration(&db, "Acme", &receiver.url("/hook"), "sms");
    // As if the database were on a 3 MiB filesystem.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sipsimd"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("SIPSIM_DATABASE_URL", &db)
        .env("SIPSIM_INGEST_KEY", KEY)
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
        .env("SIPSIM_SQLITE_MAX_SIZE_MB", "3");
    let server = Server::spawn(cmd);
    let http = crate::helpers::http();

    // Events for the ballast account (no integration: stored, not delivered) until it is full.
    let batch = |account: &str, n: usize| {
        Value::Array(
            (0..n)
                .map(|_| json!({ "account_id": account, "event": "sms", "payload": sms() }))
                .collect(),
        )
    };
    let mut accepted = 0;
    let (status, retry, body) = loop {
        let (status, retry, body) = ingest(&http, &server.base, KEY, &batch(&ballast, 200)).await;
        if status != StatusCode::ACCEPTED {
            break (status, retry, body);
        }
        accepted += 200;
        assert!(accepted < 100_000, "never full");
    };
    assert!(accepted > 0);
    assert_storage_full(status, retry, &body);
    let (status, body) = readyz(&http, &server.base).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["checks"]["database"].as_str().unwrap().starts_with("storage full"), "{body}");
    // It stays a clear 503 — the writer is not wedged — and stores nothing half.
    for _ in 0..3 {
        let (status, retry, body) = ingest(&http, &server.base, KEY, &batch(&acme, 100)).await;
        assert_storage_full(status, retry, &body);
    }
    assert!(receiver.requests().is_empty());

    // The operator frees space: erasing the ballast account. No restart.
    let erased = operator(&db, &["account", "delete", &ballast, "--yes"]);
    assert_eq!(erased["deleted"], true, "{erased}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(&http, &server.base).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _, body) = ingest(&http, &server.base, KEY, &batch(&acme, 3)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(receiver.wait_for(3, Duration::from_secs(10)).await.len(), 3);
}

#[tokio::test]
async fn a_postgres_commit_that_fails_for_want_of_space_is_503_and_the_writer_recovers() {
    let Some(db) = sipsim_store::testing::postgres_test_db("commit_fails_disk_full").await else {
        return;
    };
    let app = TestApp::spawn_on(db.url()).await;
    let account = app.account().await;
    app.integration(&account, "https://example.com/h", &["sms"]).await;
    // A deferred trigger fails every commit that stored a message or a setting with `disk_full`
    // while the switch is on: PostgreSQL reports a full disk at the same point.
    let mut admin = sqlx::PgConnection::connect(db.url()).await.unwrap();
    for statement in [
        "CREATE TABLE disk_is_full (on_ boolean)",
        "CREATE FUNCTION fail_when_full() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF EXISTS (SELECT 1 FROM disk_is_full) THEN \
           RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; \
         END IF; RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER full_messages AFTER INSERT ON messages \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_when_full()",
        "CREATE CONSTRAINT TRIGGER full_settings AFTER INSERT OR UPDATE ON settings \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_when_full()",
        "INSERT INTO disk_is_full VALUES (true)",
    ] {
        sqlx::query(statement).execute(&mut admin).await.unwrap();
    }
    let item = json!({ "account_id": account, "event": "sms", "payload": sms() });
    for _ in 0..3 {
        let (status, retry, body) =
            ingest(&app.http, &app.url(""), crate::helpers::INGEST_KEY, &item).await;
        assert_storage_full(status, retry, &body);
    }
    let (status, _, body) = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages").fetch_one(&mut admin).await.unwrap();
    assert_eq!(stored, 0, "nothing half-stored");

    sqlx::query("DELETE FROM disk_is_full").execute(&mut admin).await.unwrap();
    let (status, _, body) = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) =
        ingest(&app.http, &app.url(""), crate::helpers::INGEST_KEY, &item).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    drop(app);
    db.drop_database().await;
}
