//! No secret ever reaches the logs, at the most verbose level, whatever a request carries.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Fetch, Server, http};
use crate::process::{argv, succeeded};
use sipsim_testkit::receiver::Receiver;

const JWT_SECRET: &str = "log-test-jwt-secret-0123456789-abcdefghij";
const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const INGEST_KEY: &str = "log-test-ingest-key-5f4dcc3b5aa765d6";
const PASSWORD: &str = "a dashboard password nobody should read";
const SMTP_PASSWORD: &str = "an-smtp-password-nobody-should-read";

fn sipsimd(db_url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sipsimd"));
    c.args(args)
        .env("SIPSIM_DATABASE_URL", db_url)
        .env("SIPSIM_JWT_SECRET", JWT_SECRET)
        .env("SIPSIM_ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("SIPSIM_INGEST_KEY", INGEST_KEY)
        .env("SIPSIM_ALLOW_INSECURE_TARGETS", "1")
        .env("SIPSIM_SMTP_URL", format!("smtp://alerts:{SMTP_PASSWORD}@127.0.0.1:9"))
        .env("SIPSIM_SMTP_FROM", "alerts@example.com")
        .env("SIPSIM_LOG_FORMAT", "json")
        .env_remove("SIPSIM_LISTEN");
    c
}

fn operator(db_url: &str, args: &[&str]) -> Value {
    let out = succeeded(sipsimd(db_url, &[args, &["--json"]].concat()).output());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_logs_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sipsim.db").display());
    let receiver = Receiver::answering(&[500]).await;
    let account =
        operator(&db, &["account", "create", "Acme"])["account_id"].as_str().unwrap().to_owned();
    let client = operator(
        &db,
        &["client", "create", "--account", &account, "--scopes", "webhooks.read webhooks.write"],
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let client_secret = client["client_secret"].as_str().unwrap().to_owned();
    let signing_secret = operator(
        &db,
        &[
            "integration",
            "set",
            "--account",
            &account,
            "--url",
            &receiver.url("/hook"),
            "--events",
            "sms",
        ],
    )["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let email = "ada@example.com";
    let mut create_user = sipsimd(
        &db,
        argv!("user create --account {account} --email {email} --password-stdin --json"),
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    writeln!(create_user.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(create_user.wait_with_output().unwrap().status.success());

    let server =
        Server::spawn_logging(sipsimd(&db, &["serve", "--listen", "127.0.0.1:0"]), "trace");
    let base = server.base.clone();
    let http = http();

    // Token requests: form fields, HTTP Basic, and a wrong secret (an attacker's guess is not logged
    // either).
    let token: Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &client_secret),
        ])
        .fetch_json()
        .await;
    let access_token = token["access_token"].as_str().unwrap().to_owned();
    let basic = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("grant_type", "client_credentials")])
        .fetch()
        .await;
    assert_eq!(basic.status(), 200);
    let guess = "scs_an-attackers-guess-of-the-secret";
    let refused = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", guess),
        ])
        .fetch()
        .await;
    assert_eq!(refused.status(), 401);

    // API calls, a refused one with a tampered token among them.
    for (method, path) in [
        (reqwest::Method::GET, "/api/v2/webhooks"),
        (reqwest::Method::POST, "/api/v2/webhooks/tags"),
        (reqwest::Method::POST, "/api/v2/webhooks/not_an_event"),
    ] {
        http.request(method, format!("{base}{path}")).bearer_auth(&access_token).fetch().await;
    }
    let tampered = format!("{access_token}x");
    let r = http.get(format!("{base}/api/v2/webhooks")).bearer_auth(&tampered).fetch().await;
    assert_eq!(r.status(), 401);

    // Ingest one event: delivered, signed, failed once then retried.
    let sms: Value =
        serde_json::from_str(sipsim_core::payload::example_json(sipsim_core::Event::Sms)).unwrap();
    let r = http
        .post(format!("{base}/internal/v1/events"))
        .bearer_auth(INGEST_KEY)
        .json(&json!({ "account_id": account, "event": "sms", "payload": sms }))
        .fetch()
        .await;
    assert_eq!(r.status(), 202);
    let wrong_key = http
        .post(format!("{base}/internal/v1/events"))
        .bearer_auth("an-ingest-key-guess-123456")
        .json(&json!([]))
        .fetch()
        .await;
    assert_eq!(wrong_key.status(), 401);
    let got = receiver.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 2, "delivered after one retry");
    let signature = got[1].header("x-webhook-signature").to_owned();

    // The dashboard: log in, read the webhook page (which shows the signing secret).
    let (session, csrf, _) = crate::dashboard::login_at(&base, email, PASSWORD, false).await;
    let page = http
        .get(format!("{base}/dashboard/integrations/webhooks"))
        .header("cookie", &session)
        .fetch()
        .await;
    assert_eq!(page.status(), 200);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = server.log_so_far();
    assert!(lines.len() > 50, "trace logging produced {} lines", lines.len());
    assert!(lines.iter().any(|l| l.contains("\"request_id\"")), "no line carries a request id");
    assert!(
        lines.iter().any(|l| l.contains("failure emails are on")),
        "the SMTP settings were read"
    );
    let session_token = session.split_once('=').unwrap().1.to_owned();
    let signing_key = signing_secret.trim_start_matches("whsec_").to_owned();
    let jwt_signature = access_token.rsplit('.').next().unwrap().to_owned();
    let secrets = [
        ("client secret", client_secret.as_str()),
        ("wrong client secret", guess),
        ("access token", access_token.as_str()),
        ("access token signature", jwt_signature.as_str()),
        ("signing secret", signing_secret.as_str()),
        ("signing key", signing_key.as_str()),
        ("webhook signature", signature.as_str()),
        ("dashboard password", PASSWORD),
        ("session cookie", session_token.as_str()),
        ("CSRF token", csrf.as_str()),
        ("JWT key", JWT_SECRET),
        ("encryption key", ENCRYPTION_KEY),
        ("ingest key", INGEST_KEY),
        ("SMTP password", SMTP_PASSWORD),
    ];
    for line in &lines {
        for (what, secret) in &secrets {
            assert!(!line.contains(secret), "the {what} is in the log: {line}");
        }
    }
}
