//! The `sipsimd` binary itself: operator commands with `--json`, and `serve` as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Fetch, Server};
use crate::process::{argv, succeeded};

struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        Db { dir: tempfile::tempdir().unwrap() }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("sipsim.db").display())
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sipsimd"));
        c.args(args)
            .env("SIPSIM_DATABASE_URL", self.url())
            .env_remove("SIPSIM_ALLOW_INSECURE_TARGETS")
            .env_remove("SIPSIM_JWT_SECRET")
            .env_remove("SIPSIM_ENCRYPTION_KEY")
            .env_remove("SIPSIM_LISTEN");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs with `input` on standard input.
    fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs with `--json`; asserts success and exactly one JSON object on stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        one_object(&succeeded(self.cmd(&all).output()).stdout)
    }

    /// Runs with `--json`; asserts failure and a `{"error"}` object, returning the message.
    fn json_error(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert!(!out.status.success(), "{args:?} should fail");
        let v = one_object(&out.stdout);
        v["error"].as_str().unwrap().to_owned()
    }
}

fn one_object(stdout: &[u8]) -> Value {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line of JSON: {text}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert!(v.is_object());
    v
}

#[test]
fn operator_commands_manage_accounts_clients_and_integrations() {
    let db = Db::new();
    assert_eq!(db.json(&["migrate"])["migrated"], true);
    let acc = db.json(&["account", "create", "Acme"]);
    let account = acc["account_id"].as_str().unwrap().to_owned();
    assert!(account.starts_with("acc_"));

    let client = db.json(argv!(
        "client create --account {account} --scopes webhooks.read,webhooks.write --name crm"
    ));
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    assert!(client_id.starts_with("cli_"));
    assert!(client["client_secret"].as_str().unwrap().len() >= 40);
    assert_eq!(client["scopes"], "webhooks.read webhooks.write");

    let list = db.json(&["client", "list", "--account", &account]);
    let clients = list["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0]["client_id"], client_id.as_str());
    assert!(clients[0].get("client_secret").is_none(), "secret shown once only");
    assert!(
        !list.to_string().contains(client["client_secret"].as_str().unwrap()),
        "the secret is never printed again"
    );

    // URL rules: https public targets only, unless insecure targets are allowed.
    let err =
        db.json_error(argv!("integration set --account {account} --url http://127.0.0.1:9/hook"));
    assert!(err.contains("https://"), "{err}");
    let err =
        db.json_error(argv!("integration set --account {account} --url https://10.0.0.5/hook"));
    assert!(err.contains("private"), "{err}");
    let err = db.json_error(argv!(
        "integration set --account {account} --url https://example.com/ --events sms,calls"
    ));
    assert!(err.contains("'calls'"), "{err}");

    let set = db.json(&[
        "integration",
        "set",
        "--account",
        &account,
        "--url",
        "https://example.com/webhooks/sipsim",
        "--events",
        "outgoing_call_end incoming_call_start",
    ]);
    assert_eq!(set["created"], true);
    let secret = set["signing_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(set["standard_webhooks_secret"], secret, "a generated secret is in that form");

    let show = db.json(&["integration", "show", "--account", &account]);
    let mut keys: Vec<_> = show.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "account_id",
            "enabled",
            "max_rate",
            "signing_secret",
            "standard_webhooks_secret",
            "state",
            "subscribed_events",
            "webhook_url"
        ]
    );
    assert_eq!(show["webhook_url"], "https://example.com/webhooks/sipsim");
    assert_eq!(show["enabled"], true);
    assert_eq!(show["state"], "enabled");
    assert_eq!(
        show["subscribed_events"],
        serde_json::json!(["incoming_call_start", "outgoing_call_end"])
    );

    // Changing the URL and disabling keeps events and secret.
    let set = db
        .json(argv!("integration set --account {account} --url https://example.org/h --disabled"));
    assert_eq!(set["created"], false);
    assert_eq!(set["enabled"], false);
    assert_eq!(set["state"], "disabled");
    assert_eq!(set["signing_secret"], secret.as_str());
    assert_eq!(set["subscribed_events"].as_array().unwrap().len(), 2);

    // Insecure targets for development.
    let out = db
        .cmd(argv!("integration set --account {account} --url http://127.0.0.1:9/hook --json"))
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(one_object(&out.stdout)["state"], "enabled");

    assert_eq!(db.json(&["integration", "remove", "--account", &account])["removed"], true);
    let err = db.json_error(&["integration", "show", "--account", &account]);
    assert!(err.contains("no webhook integration"), "{err}");

    assert_eq!(db.json(&["client", "delete", &client_id])["deleted"], true);
    let err = db.json_error(&["client", "delete", &client_id]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn operator_errors_name_the_problem() {
    let db = Db::new();
    let missing = "acc_0123456789abcdefghjkmnpqrs";
    let err = db.json_error(argv!("client create --account {missing} --scopes webhooks.read"));
    assert_eq!(err, format!("account {missing} does not exist"));
    let err = db.json_error(argv!("client create --account nope --scopes webhooks.read"));
    assert!(err.contains("not a valid account id"), "{err}");
    let acc = db.json(&["account", "create", "X"])["account_id"].as_str().unwrap().to_owned();
    let err = db.json_error(argv!("client create --account {acc} --scopes calls.read"));
    assert!(err.contains("unknown scope 'calls.read'"), "{err}");
    let err = db.json_error(&["client", "create", "--account", &acc, "--scopes", ""]);
    assert!(err.contains("at least one scope"), "{err}");

    // Without --json: the message on stderr, non-zero exit.
    let out = db.run(&["integration", "show", "--account", missing]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("error: account {missing} does not exist")
    );
}

fn serve(db: &Db) -> Server {
    Server::spawn(db.cmd(&["serve", "--listen", "127.0.0.1:0"]))
}

/// What README.md tells a new user to do, end to end, with the real binary.
#[tokio::test(flavor = "multi_thread")]
async fn readme_walkthrough_reaches_200_and_client_delete_revokes() {
    let db = Db::new();
    let account =
        db.json(&["account", "create", "Acme"])["account_id"].as_str().unwrap().to_owned();
    let client = db.json(&[
        "client",
        "create",
        "--account",
        &account,
        "--scopes",
        "webhooks.read webhooks.write",
    ]);
    db.json(argv!("integration set --account {account} --url https://example.com/webhooks/sipsim --events incoming_call_start,incoming_call_end"));
    let server = serve(&db);

    // Without SIPSIM_INGEST_KEY the ingest route is off, and the log says so.
    assert!(server.log_contains("SIPSIM_INGEST_KEY is not set", Duration::from_secs(5)));
    // Without SIPSIM_SMTP_URL and SIPSIM_SMTP_FROM no failure email is sent, and the log says so.
    assert!(server.log_contains("failure emails are off", Duration::from_secs(5)));
    let off = crate::helpers::http()
        .post(format!("{}/internal/v1/events", server.base))
        .json(&serde_json::json!({}))
        .fetch()
        .await;
    assert_eq!(off.status(), 404);

    // A second server on the same SQLite file is refused.
    let second = db.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already serving"));

    let http = crate::helpers::http();
    let token: Value = http
        .post(format!("{}/oauth/token", server.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope=webhooks.read%20webhooks.write",
            client["client_id"].as_str().unwrap(),
            client["client_secret"].as_str().unwrap()
        ))
        .fetch_json().await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let resp = http
        .get(format!("{}/api/v2/webhooks", server.base))
        .header("Authorization", format!("Bearer {token}"))
        .fetch()
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["data"],
        serde_json::json!([{ "event": "incoming_call_start" }, { "event": "incoming_call_end" }])
    );

    // Deleting the client from another process revokes its token within 5 seconds.
    db.json(&["client", "delete", client["client_id"].as_str().unwrap()]);
    let deleted = Instant::now();
    loop {
        let status = http
            .get(format!("{}/api/v2/webhooks", server.base))
            .header("Authorization", format!("Bearer {token}"))
            .fetch()
            .await
            .status();
        if status == 401 {
            break;
        }
        assert!(deleted.elapsed() < Duration::from_secs(5), "still {status} after 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM stops it cleanly.
    let mut server = server;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn signing_secrets_are_encrypted_at_rest_when_a_key_is_configured() {
    let db = Db::new();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // base64 of bytes 0..32
    let with_key = |args: &[&str]| {
        let mut cmd = db.cmd(&[args, &["--json"]].concat());
        let out = succeeded(cmd.env("SIPSIM_ENCRYPTION_KEY", key).output());
        one_object(&out.stdout)
    };
    let account =
        with_key(&["account", "create", "Acme"])["account_id"].as_str().unwrap().to_owned();
    let set = with_key(argv!("integration set --account {account} --url https://example.com/h"));
    let secret = set["signing_secret"].as_str().unwrap().to_owned();
    assert_eq!(
        with_key(&["integration", "show", "--account", &account])["signing_secret"],
        secret.as_str()
    );

    // A secret the customer brings is sealed the same way.
    let brought = "the customer's own SIPSIM secret";
    let mut cmd = db.cmd(argv!(
        "integration set --account {account} --url https://example.com/h --signing-secret-stdin --json"
    ));
    let mut child = cmd
        .env("SIPSIM_ENCRYPTION_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{brought}\n").as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());

    // Neither the database file nor its write-ahead log holds either secret in clear.
    let base = db.dir.path().join("sipsim.db");
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", base.display());
        if let Ok(bytes) = std::fs::read(&path) {
            for needle in [secret.as_bytes(), brought.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{path} contains a signing secret in clear"
                );
            }
        }
    }

    // Without the key, the secret cannot be read, and the error says why.
    let err = db.json_error(&["integration", "show", "--account", &account]);
    assert!(err.contains("SIPSIM_ENCRYPTION_KEY"), "{err}");
    // A malformed key is refused up front.
    let out = db
        .cmd(&["integration", "show", "--account", &account])
        .env("SIPSIM_ENCRYPTION_KEY", "not-a-key")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 bytes"));
}

/// README's first command: the demo shows signed events arriving, and its credentials work.
#[tokio::test(flavor = "multi_thread")]
async fn demo_shows_verified_deliveries_and_working_credentials() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipsimd"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env_remove("SIPSIM_DATABASE_URL")
        .env_remove("SIPSIM_ENCRYPTION_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.iter().filter(|l: &&String| l.contains("signatures verified")).count() < 6 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("demo printed only:\n{}", lines.join("\n")),
        }
    }
    assert!(!lines.iter().any(|l| l.contains("NOT VERIFIED")));
    // Simulated traffic: every line names a catalog event, and each call's first event is its start.
    let mut calls_seen = std::collections::BTreeSet::new();
    for pair in lines.windows(2) {
        let Some(event) =
            pair[0].strip_prefix("  received ").and_then(|l| l.split_whitespace().next())
        else {
            continue;
        };
        assert!(sipsim_core::Event::subscribable(event).is_some(), "{event}");
        let body: Value = serde_json::from_str(pair[1].trim()).unwrap();
        if let Some(pbx) = body["pbx_id"].as_str()
            && calls_seen.insert(pbx.to_owned())
        {
            assert!(event.ends_with("_call_start"), "{pbx} began with {event}");
        }
    }
    let value = |label: &str| {
        lines
            .iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(label)
                    .map(|v| v.split_whitespace().next().unwrap().to_owned())
            })
            .unwrap_or_else(|| panic!("no {label} line"))
    };
    let api = value("API");
    let http = crate::helpers::http();
    let token: Value = http
        .post(format!("{api}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &value("client_id")),
            ("client_secret", &value("client_secret")),
        ])
        .fetch_json()
        .await;
    let list: Value = http
        .get(format!("{api}/api/v2/webhooks"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .fetch_json()
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 14);

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `integration test` against receivers answering 200, 503, and nothing at all.
#[tokio::test(flavor = "multi_thread")]
async fn integration_test_reports_success_error_and_connection_failure() {
    use sqlx::Connection;

    let db = Db::new();
    let account =
        db.json(&["account", "create", "Acme"])["account_id"].as_str().unwrap().to_owned();
    let err = db.json_error(&["integration", "test", "--account", &account]);
    assert!(err.contains("no webhook integration"), "{err}");

    let rx = sipsim_testkit::receiver::Receiver::answering(&[200, 503]).await;
    let set = |url: &str| {
        let out = db
            .cmd(argv!("integration set --account {account} --url {url} --json"))
            .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
            .output()
            .unwrap();
        assert!(out.status.success());
        one_object(&out.stdout)["signing_secret"].as_str().unwrap().to_owned()
    };
    let test = |timeout: &str| {
        db.cmd(argv!("integration test --account {account} --timeout {timeout}"))
            .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
            .output()
            .unwrap()
    };
    let secret = set(&rx.url("/hook"));

    let out = test("2s");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Success (HTTP 200)");
    let out = test("2s");
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Error (HTTP 503)");

    // What arrived is the documented test event, signed.
    let got = rx.requests();
    assert_eq!(got.len(), 2);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event"], "test");
    assert_eq!(body["pbx_id"], "test_000000");
    assert_eq!(
        body["message"],
        "This is a test webhook from SIPSIM. If you receive this, your endpoint is configured correctly."
    );
    assert_eq!(got[0].header("x-webhook-event"), "test");
    sipsim_core::signing::verify_sipsim(
        &secret,
        got[0].header("x-webhook-timestamp"),
        got[0].header("x-webhook-signature"),
        &got[0].body,
    )
    .unwrap();

    // A receiver that accepts connections and never answers: a timeout is a connection failure.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in silent.incoming().take(1) {
            open.push(conn);
        }
        std::thread::sleep(Duration::from_secs(3));
    });
    set(&silent_url);
    let started = Instant::now();
    let out = test("1s");
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Connection failed: timeout after 1s");
    assert!(started.elapsed() < Duration::from_secs(3));
    held.join().unwrap();

    // Nobody listening at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    set(&closed_url);
    let out = db
        .cmd(&["integration", "test", "--account", &account, "--json"])
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let result = one_object(&out.stdout);
    assert!(result["result"].as_str().unwrap().starts_with("Connection failed: "), "{result}");
    assert_eq!(result["ok"], false);
    assert_eq!(result["status_code"], Value::Null);

    // Every test was logged as one attempt, none queued for retry.
    let mut conn = sqlx::SqliteConnection::connect(&db.url()).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, attempts FROM deliveries WHERE event = 'test' ORDER BY created_at, id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("succeeded".to_owned(), 1),
            ("failed".to_owned(), 1),
            ("failed".to_owned(), 1),
            ("failed".to_owned(), 1)
        ]
    );
}

/// `integration resume` ends a pause; `integration set` never does.
#[tokio::test(flavor = "multi_thread")]
async fn resume_ends_a_pause_and_set_does_not() {
    use sqlx::Connection;

    let db = Db::new();
    let account =
        db.json(&["account", "create", "Acme"])["account_id"].as_str().unwrap().to_owned();
    db.json(argv!("integration set --account {account} --url https://example.com/h"));
    let err = db.json_error(argv!("integration resume --account {account} --kept deliver"));
    assert_eq!(err, format!("the webhook integration of {account} is not paused"));

    // Paused as a 410 would pause it (the pausing itself is tested in sipsim-delivery).
    let mut conn = sqlx::SqliteConnection::connect(&db.url()).await.unwrap();
    sqlx::query("UPDATE integrations SET state = 'paused', paused_reason = 'the endpoint answered 410 Gone'")
        .execute(&mut conn)
        .await
        .unwrap();
    let set = db.json(argv!("integration set --account {account} --url https://example.com/new"));
    assert_eq!(set["state"], "paused", "set changes the URL but does not resume");
    assert_eq!(set["enabled"], false);
    let text = db.run(&["integration", "show", "--account", &account]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("paused (the endpoint answered 410 Gone)")
    );

    let resumed = db.json(argv!("integration resume --account {account} --kept drop"));
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["kept"], 0);
    let show = db.json(&["integration", "show", "--account", &account]);
    assert_eq!(show["state"], "enabled");
    assert_eq!(show["webhook_url"], "https://example.com/new");
}

#[test]
fn user_create_takes_a_password_from_stdin_or_makes_one() {
    let db = Db::new();
    let account =
        db.json(&["account", "create", "Acme"])["account_id"].as_str().unwrap().to_owned();
    // Generated: shown once, and it logs in (checked against the stored hash).
    let made = db.json(argv!("user create --account {account} --email Ops@Example.com"));
    assert_eq!(made["email"], "ops@example.com");
    let password = made["password"].as_str().unwrap();
    assert!(password.len() >= 40, "{password}");
    // From stdin: too short is refused, a long one is taken and not echoed.
    let run_with_stdin = |email: &str, input: &str| {
        db.run_with_stdin(
            argv!("user create --account {account} --email {email} --password-stdin --json"),
            input,
        )
    };
    let short = run_with_stdin("a@example.com", "short\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stdout).contains("at least 10 characters"));
    let ok = run_with_stdin("b@example.com", "a long enough password\n");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let v = one_object(&ok.stdout);
    assert!(v.get("password").is_none(), "a given password is never printed");
    assert!(!String::from_utf8_lossy(&ok.stdout).contains("a long enough password"));
    // The same email twice is refused, naming it.
    let again = db.json_error(argv!("user create --account {account} --email OPS@example.com"));
    assert!(again.contains("exists already"), "{again}");
}

/// `integration set --signing-secret-stdin`: a customer moving from SIPSIM keeps its secret, so its
/// receivers keep verifying; a new integration starts with it, an existing one's is replaced.
#[test]
fn an_integration_signs_with_a_secret_brought_on_stdin() {
    use base64::Engine as _;
    let db = Db::new();
    let account =
        db.json(&["account", "create", "Acme"])["account_id"].as_str().unwrap().to_owned();
    let set = |input: &str| {
        db.run_with_stdin(
            argv!(
                "integration set --account {account} --url https://example.com/hook --signing-secret-stdin --json"
            ),
            input,
        )
    };
    // The line ending (Windows' too) is not part of the secret; the Standard Webhooks form is shown.
    let made = one_object(&succeeded(Ok(set("my SIPSIM secret 1234\r\n"))).stdout);
    assert_eq!(
        (made["created"].clone(), made["signing_secret"].clone()),
        (true.into(), "my SIPSIM secret 1234".into())
    );
    let standard = base64::engine::general_purpose::STANDARD.encode("my SIPSIM secret 1234");
    assert_eq!(made["standard_webhooks_secret"], format!("whsec_{standard}"));
    // On the existing integration it replaces the secret; `show` prints the new one.
    let replaced = one_object(&succeeded(Ok(set("another secret, 25 bytes\n"))).stdout);
    assert_eq!(replaced["created"], false);
    let shown = db.json(argv!("integration show --account {account}"));
    assert_eq!(shown["signing_secret"], "another secret, 25 bytes");
    // Refused, naming why, and nothing changes.
    for (input, why) in [
        ("short\n", "at least 16 bytes"),
        ("\n", "at least 16 bytes"),
        ("tab\tinside the secret\n", "printable"),
        ("  padded secret of 24\n", "start or end with a space"),
    ] {
        let out = set(input);
        assert!(!out.status.success(), "{input:?}");
        let error = one_object(&out.stdout)["error"].as_str().unwrap().to_owned();
        assert!(error.contains(why), "{input:?}: {error}");
    }
    let shown = db.json(argv!("integration show --account {account}"));
    assert_eq!(shown["signing_secret"], "another secret, 25 bytes");
}

/// `account delete` erases: the account's payloads and ids are gone from the database file and its
/// log, byte for byte, while another account's stay.
#[test]
fn account_delete_erases_the_account_from_the_file() {
    let db = Db::new();
    let mut accounts = Vec::new();
    for name in ["Leaving", "Staying"] {
        let account =
            db.json(&["account", "create", name])["account_id"].as_str().unwrap().to_owned();
        db.json(argv!("client create --account {account} --scopes webhooks.read"));
        db.json(argv!(
            "integration set --account {account} --url https://example.com/h --events sms"
        ));
        let marker = format!("secret-plans-of-{name}");
        let payload = serde_json::json!({
            "event": "sms", "caller": "+33612345678", "receiver": "+33198765432",
            "message": marker, "time": "2025-01-15T11:00:00Z", "direction": "inbound"
        })
        .to_string();
        for _ in 0..20 {
            db.json(&["emit", "--account", &account, "sms", "--payload", &payload]);
        }
        accounts.push((account, marker));
    }
    let contains = |needle: &str| {
        let base = db.dir.path().join("sipsim.db");
        ["", "-wal"].iter().any(|suffix| {
            std::fs::read(format!("{}{suffix}", base.display()))
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
    };
    let (gone, gone_marker) = &accounts[0];
    let (kept, kept_marker) = &accounts[1];
    assert!(contains(gone_marker) && contains(gone));

    let err = db.json_error(&["account", "delete", gone]);
    assert!(err.contains("add --yes"), "{err}");
    assert!(contains(gone_marker), "nothing is erased without --yes");

    let out = db.json(&["account", "delete", gone, "--yes"]);
    assert_eq!(out["deleted"], true);
    assert!(!contains(gone_marker), "a payload of the erased account is still in the file");
    assert!(!contains(gone), "the erased account's id is still in the file");
    assert!(contains(kept_marker) && contains(kept), "the other account is kept");

    let err = db.json_error(&["account", "delete", gone, "--yes"]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn account_retention_is_set_and_reset() {
    let db = Db::new();
    let account =
        db.json(&["account", "create", "Acme"])["account_id"].as_str().unwrap().to_owned();
    let out = db.json(&["account", "retention", &account, "--days", "7"]);
    assert_eq!(out["retention_days"], 7);
    let out = db.json(&["account", "retention", &account, "--default"]);
    assert_eq!(out["retention_days"], serde_json::Value::Null);
    let err = db.json_error(&["account", "retention", &account, "--days", "0"]);
    assert!(err.contains("at least 1"), "{err}");
    let err = db.json_error(argv!("account retention acc_00000000000000000000000000 --days 3"));
    assert!(err.contains("does not exist"), "{err}");
}

/// A settings file is read with `--config` (or `SIPSIM_CONFIG`); a variable overrides it, a flag
/// overrides both; a key that is no setting stops the command, named.
#[test]
fn settings_come_from_a_file_then_variables_then_flags() {
    let db = Db::new();
    let dir = db.dir.path();
    let file = dir.join("sipsim.toml");
    let from_file = dir.join("from-file.db");
    std::fs::write(&file, format!("database_url = \"sqlite://{}\"\n", from_file.display()))
        .unwrap();
    let file_arg = file.to_str().unwrap();

    // The file's database, where no variable names one.
    let mut cmd = db.cmd(&["--config", file_arg, "--json", "migrate"]);
    cmd.env_remove("SIPSIM_DATABASE_URL");
    assert!(cmd.output().unwrap().status.success());
    assert!(from_file.is_file(), "the file's database_url was used");

    // The variable over the file (Db::cmd sets SIPSIM_DATABASE_URL).
    let out = db.run(&["--config", file_arg, "--json", "account", "create", "Acme"]);
    assert!(out.status.success());
    assert!(std::path::Path::new(&db.url()["sqlite://".len()..]).is_file());

    // The flag over both, the file named by its variable this time.
    let from_flag = dir.join("from-flag.db");
    let flag_url = format!("sqlite://{}", from_flag.display());
    let mut cmd = db.cmd(&["--database", &flag_url, "--json", "migrate"]);
    cmd.env("SIPSIM_CONFIG", file_arg);
    assert!(cmd.output().unwrap().status.success());
    assert!(from_flag.is_file());

    // A typo is refused, by name, before anything runs.
    std::fs::write(&file, "databse_url = \"sqlite://x.db\"\n").unwrap();
    let e = db.json_error(&["--config", file_arg, "migrate"]);
    assert!(e.contains("'databse_url' is not a setting"), "{e}");
    let e = db.json_error(&["--config", dir.join("missing.toml").to_str().unwrap(), "migrate"]);
    assert!(e.contains("cannot read the configuration file"), "{e}");
}
