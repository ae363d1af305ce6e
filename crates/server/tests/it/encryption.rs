//! The encryption key at rest: a node whose key cannot open the stored secrets refuses to start or,
//! if it meets one while running, hands its deliveries back and says so; secrets stored in clear
//! are encrypted once a key is set; keys are rotated by a command.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sipsim_core::cipher::{SecretCipher, SecretRewrite, SecretSlot, unseal};
use sipsim_core::queue::{DeliveryFilter, DeliveryStatus};
use sipsim_core::{AccountId, Store};

use crate::helpers::{Server, Setup, TestApp};
use crate::process::argv;
use sipsim_testkit::receiver::Receiver;

/// Base64 of bytes 0..32 and of 32..64: two keys.
const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn cipher(key: &str) -> SecretCipher {
    SecretCipher::from_base64(key).unwrap()
}

/// `sipsimd ARGS` on the SQLite database at `db`, with `SIPSIM_ENCRYPTION_KEY=key` if given.
fn sipsimd(db: &str, key: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipsimd"));
    c.args(args)
        .env("SIPSIM_DATABASE_URL", db)
        .env_remove("SIPSIM_ENCRYPTION_KEY")
        .env_remove("SIPSIM_JWT_SECRET");
    if let Some(key) = key {
        c.env("SIPSIM_ENCRYPTION_KEY", key);
    }
    c
}

/// Runs an operator command with `--json`; its exit status and JSON.
fn run(db: &str, key: Option<&str>, args: &[&str]) -> (bool, Value) {
    let out = sipsimd(db, key, &[args, &["--json"]].concat()).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v)
}

/// An account with an integration, made with `key`; returns the account and its signing secret.
fn account_with_integration(db: &str, key: Option<&str>) -> (String, String) {
    let (ok, created) = run(db, key, &["account", "create", "Acme"]);
    assert!(ok, "{created}");
    let account = created["account_id"].as_str().unwrap().to_owned();
    let (ok, set) =
        run(db, key, argv!("integration set --account {account} --url https://example.com/h"));
    assert!(ok, "{set}");
    let secret = set["signing_secret"].as_str().unwrap().to_owned();
    (account, secret)
}

/// Starts `serve` and returns its log up to and including the line announcing the listener, and
/// the server (killed when dropped); or, if it exits first, its whole log and exit status.
fn start_serving(mut cmd: Command) -> Result<(Vec<String>, Server), (Vec<String>, bool)> {
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        let serving = line.contains("sipsimd serving");
        log.push(line);
        if serving {
            let base = log
                .last()
                .and_then(|l| l.split("listen=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .map(|addr| format!("http://{addr}"))
                .unwrap();
            std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
            return Ok((log, Server::adopt(child, base)));
        }
    }
    let status = child.wait().unwrap();
    Err((log, status.success()))
}

/// Whether `needle` is anywhere in the database file or its write-ahead log.
fn files_contain(dir: &std::path::Path, needle: &str) -> bool {
    ["sipsim.db", "sipsim.db-wal"].iter().any(|name| {
        std::fs::read(dir.join(name))
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}

#[test]
fn a_node_without_the_right_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sipsim.db").display());
    account_with_integration(&db, Some(KEY_A));
    // The reviewer's case: SIPSIM_JWT_SECRET set, so no stored secret is read at start, and the
    // node used to start and fail every delivery it claimed.
    let jwt = "a-jwt-secret-of-at-least-32-bytes-long";
    for (key, says) in [
        (None, "SIPSIM_ENCRYPTION_KEY is not set"),
        (Some(KEY_B), "SIPSIM_ENCRYPTION_KEY does not decrypt 2 of the 2 encrypted secret(s)"),
    ] {
        let mut cmd = sipsimd(&db, key, &[]);
        cmd.env("SIPSIM_JWT_SECRET", jwt);
        let (log, ok) = start_serving(cmd).err().expect("it must not start");
        assert!(!ok);
        let log = log.join("\n");
        assert!(log.contains(says), "{log}");
    }
    // A key ring holding the right key starts (rotation in progress).
    let mut cmd = sipsimd(&db, Some(&format!("{KEY_B},{KEY_A}")), &[]);
    cmd.env("SIPSIM_JWT_SECRET", jwt);
    assert!(start_serving(cmd).is_ok());
    // Operator commands refuse too, rather than write a secret nobody else could read.
    let (ok, err) = run(&db, Some(KEY_B), &["account", "create", "Other"]);
    assert!(!ok);
    assert!(err["error"].as_str().unwrap().contains("does not decrypt"), "{err}");
}

#[test]
fn setting_a_key_later_encrypts_what_was_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sipsim.db").display());
    let (account, secret) = account_with_integration(&db, None);
    // A first start without a key generates the JWT key and stores it in clear.
    drop(start_serving(sipsimd(&db, None, &[])).ok().unwrap());
    assert!(files_contain(dir.path(), &secret), "precondition: in clear");

    let (log, server) = start_serving(sipsimd(&db, Some(KEY_A), &[])).ok().unwrap();
    let log = log.join("\n");
    assert!(
        log.contains("encrypted the secrets that were stored in clear")
            && log.contains("secrets=2"),
        "{log}"
    );
    drop(server);
    assert!(!files_contain(dir.path(), &secret), "the signing secret is still in clear");
    // The JWT key is sealed too: a copy of the database no longer gives a key to forge tokens with.
    let jwt_key = stored_setting(&dir.path().join("sipsim.db"), "jwt_hs256_key");
    assert!(jwt_key.starts_with("enc:v1:"), "{jwt_key}");
    // Read back with the key, the secret is the one it was.
    let (ok, shown) = run(&db, Some(KEY_A), &["integration", "show", "--account", &account]);
    assert!(ok, "{shown}");
    assert_eq!(shown["signing_secret"], secret.as_str());
    // A second start has nothing left to encrypt.
    let (log, _server) = start_serving(sipsimd(&db, Some(KEY_A), &[])).ok().unwrap();
    assert!(!log.join("\n").contains("encrypted the secrets"));
}

/// A setting's stored value, read from the database file.
fn stored_setting(path: &std::path::Path, key: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    })
}

#[test]
fn rotation_reencrypts_everything_and_waits_for_the_server_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sipsim.db").display());
    let (account, secret) = account_with_integration(&db, Some(KEY_A));
    let rotate = |key: Option<&str>, new_key: &str| {
        let mut child = sipsimd(&db, key, &["encryption", "rotate", "--new-key-stdin", "--json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        // A command that refuses (a server runs on the file) may exit before it reads the key.
        if let Err(e) = writeln!(child.stdin.take().unwrap(), "{new_key}") {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        let out = child.wait_with_output().unwrap();
        (out.status.success(), serde_json::from_slice::<Value>(&out.stdout).unwrap())
    };
    // While a server runs on the file, the command refuses and says what to stop.
    let (_, server) = start_serving(sipsimd(&db, Some(KEY_A), &[])).ok().unwrap();
    let (ok, out) = rotate(Some(KEY_A), KEY_B);
    assert!(!ok);
    assert!(out["error"].as_str().unwrap().contains("stop it"), "{out}");
    drop(server);
    // The key is never taken from the command line.
    let (ok, _) = run(&db, Some(KEY_A), &["encryption", "rotate"]);
    assert!(!ok);
    // Without the current key nothing can be re-encrypted.
    let (ok, out) = rotate(None, KEY_B);
    assert!(!ok, "{out}");
    let (ok, out) = rotate(Some(KEY_A), KEY_B);
    assert!(ok, "{out}");
    assert_eq!(
        out,
        json!({ "reencrypted": 3 }),
        "the signing secret, the JWT key the server generated, and the canary"
    );
    let (ok, shown) = run(&db, Some(KEY_B), &["integration", "show", "--account", &account]);
    assert!(ok, "{shown}");
    assert_eq!(shown["signing_secret"], secret.as_str());
    let (ok, err) = run(&db, Some(KEY_A), &["integration", "show", "--account", &account]);
    assert!(!ok);
    assert!(err["error"].as_str().unwrap().contains("does not decrypt"), "{err}");
}

/// Seals `account`'s stored signing secret with `to` instead (read with `from`), through the
/// store: as another node with another key would have written it.
async fn reseal_signing_secret(store: &dyn Store, account: &AccountId, from: &str, to: &str) {
    let slot = SecretSlot::SigningSecret(account.clone());
    let was = store.stored_secrets().await.unwrap().into_iter().find(|s| s.slot == slot).unwrap();
    let plain = unseal(Some(&cipher(from)), &was.stored, &slot.context()).unwrap();
    let now = cipher(to).seal(&plain, &slot.context());
    assert!(store.rewrite_secrets(&[SecretRewrite { was, now }]).await.unwrap());
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let (status, _, body) = app.call(Method::GET, "/readyz", None).await;
    (status, body)
}

async fn a_node_that_cannot_decrypt_hands_deliveries_back(database_url: Option<String>) {
    let app = TestApp::start(Setup {
        target_policy: sipsim_core::target::TargetPolicy::AllowInsecure,
        database_url,
        encryption_key: Some(KEY_A),
        ..Setup::default()
    })
    .await;
    let receiver = Receiver::answering(&[200]).await;
    let account = app.account().await;
    app.local_integration(&account, &receiver.url("/hook"), &["sms"]).await;
    reseal_signing_secret(&*app.store, &account, KEY_A, KEY_B).await;

    app.ingest_example(&account, sipsim_core::Event::Sms).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = ready(&app).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break body;
        }
        assert!(Instant::now() < deadline, "readyz stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let why = body["checks"]["dispatcher"].as_str().unwrap();
    assert!(
        why.starts_with("stopped: a signing secret cannot be decrypted with this node's key"),
        "{body}"
    );
    // Handed back, not failed: nothing sent, still pending, no attempt counted.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(receiver.requests().is_empty());
    let deliveries =
        app.store.list_deliveries(&account, &DeliveryFilter::default(), None, 10).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, DeliveryStatus::Pending);
    assert_eq!(deliveries[0].attempts, 0);
    assert_eq!(deliveries[0].last_error, None);

    // Mended (the secret readable again): the node resumes by itself and delivers.
    reseal_signing_secret(&*app.store, &account, KEY_B, KEY_A).await;
    assert_eq!(receiver.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&app).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_that_cannot_decrypt_hands_deliveries_back_sqlite() {
    a_node_that_cannot_decrypt_hands_deliveries_back(None).await;
}

#[tokio::test]
async fn a_node_that_cannot_decrypt_hands_deliveries_back_postgres() {
    let Some(db) = sipsim_store::testing::postgres_test_db("cannot_decrypt_hands_back").await
    else {
        return;
    };
    a_node_that_cannot_decrypt_hands_deliveries_back(Some(db.url().to_owned())).await;
    db.drop_database().await;
}
