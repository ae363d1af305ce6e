//! Failure emails, as an account's dashboard users get them: a real node delivers to a real
//! receiver that fails, and a real SMTP server (Python's aiosmtpd, `scripts/smtp_sink.py`) receives
//! what the notifier sends; the tests read the messages it received.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sipsim_core::store::{IntegrationState, KeptDeliveries};
use sipsim_core::target::TargetPolicy;
use sipsim_core::{AccountId, Event};
use sipsim_server::notify::NoticeConfig;
use sipsim_server::notify::mail::{MailSettings, SmtpUrl};
use sipsim_testkit::receiver::{Receiver, Reply};

use crate::helpers::{Setup, TestApp};

const USER: &str = "notifier";
const PASSWORD: &str = "p@ss:word";

/// A running `smtp_sink.py`, killed on drop, and the messages it printed.
struct SmtpSink {
    child: Child,
    port: u16,
    messages: Arc<Mutex<Vec<Value>>>,
}

impl SmtpSink {
    /// Starts one on `port` (0: any), requiring [`USER`]'s login over plain SMTP.
    fn start(port: u16) -> Option<SmtpSink> {
        SmtpSink::with_args(&["--port", &port.to_string(), "--login", USER, PASSWORD])
    }

    /// Starts one with `smtp_sink.py`'s `args`; `None` (after saying so) when aiosmtpd is not
    /// installed and the run does not require every suite.
    fn with_args(args: &[&str]) -> Option<SmtpSink> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let python = format!("{root}/.venv/bin/python");
        let installed = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                !sipsim_store::testing::required(),
                "the failure-email tests need aiosmtpd: run scripts/ensure-python.sh (CI=true does not skip them)"
            );
            eprintln!(
                "\nNOTE: the failure-email tests were NOT run: aiosmtpd is missing (run scripts/ensure-python.sh).\n"
            );
            return None;
        }
        let mut child = Command::new(&python)
            .arg(format!("{root}/scripts/smtp_sink.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let port = lines.next().and_then(Result::ok).and_then(|l| l.trim().parse().ok());
        let port = port.expect("smtp_sink.py prints its port");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let received = messages.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let message = serde_json::from_str(&line).expect("one JSON object per line");
                received.lock().unwrap().push(message);
            }
        });
        Some(SmtpSink { child, port, messages })
    }

    /// Waits up to `within` until `n` messages were received; returns them all.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.messages.lock().unwrap().clone();
            if got.len() >= n || Instant::now() > deadline {
                assert!(got.len() >= n, "{} of {n} emails within {within:?}: {got:#?}", got.len());
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Failure emails through the sink on `port`, linking to `https://hooks.example.com`.
fn emails_to(port: u16, failing_after: Duration, every: Duration) -> NoticeConfig {
    let url = format!(
        "smtp://{USER}:{}@127.0.0.1:{port}",
        PASSWORD.replace('@', "%40").replace(':', "%3A")
    );
    NoticeConfig {
        mail: Some(MailSettings {
            smtp: SmtpUrl::parse(&url).unwrap(),
            from: "SIPSIM webhooks <alerts@example.com>".parse().unwrap(),
            extra_ca_pem: None,
        }),
        public_url: "https://hooks.example.com".into(),
        failing_after,
        every,
        claim: Duration::from_secs(2),
    }
}

/// An account with two dashboard users and an SMS integration delivering to `receiver`; and a
/// user of another account, who must hear nothing.
async fn account_with_users(app: &TestApp, receiver: &Receiver) -> (AccountId, String) {
    let account = app.account().await;
    let hash = sipsim_server::service::users::hash_password(crate::dashboard::PASSWORD).unwrap();
    for email in ["ops@example.com", "Dev@Example.com"] {
        app.store.create_user(&account, email, &hash).await.unwrap();
    }
    let bystander = app.account().await;
    app.store.create_user(&bystander, "bystander@example.com", "$argon2id$unused").await.unwrap();
    let url = receiver.url("/hooks/sipsim");
    app.local_integration(&account, &url, &["sms"]).await;
    (account, url)
}

fn recipients(messages: &[Value]) -> BTreeSet<String> {
    messages
        .iter()
        .flat_map(|m| m["rcpt_tos"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

fn text(message: &Value) -> &str {
    message["text"].as_str().unwrap()
}

#[tokio::test]
async fn a_pause_emails_the_accounts_users_within_30_s_and_so_does_the_recovery() {
    let Some(sink) = SmtpSink::start(0) else { return };
    let notices = emails_to(sink.port, Duration::from_secs(3600), NoticeConfig::default().every);
    let app = TestApp::start(Setup {
        target_policy: TargetPolicy::AllowInsecure,
        notices,
        ..Setup::default()
    })
    .await;
    let receiver = Receiver::always(Reply::Status(410)).await;
    let (account, url) = account_with_users(&app, &receiver).await;

    app.ingest_example(&account, Event::Sms).await;
    let gone = receiver.wait_for(1, Duration::from_secs(10)).await[0].at;
    let paused = sink.wait_for(2, Duration::from_secs(30)).await;
    assert!(
        gone.elapsed() <= Duration::from_secs(30),
        "the pause email came {:?} after the 410",
        gone.elapsed()
    );
    assert_eq!(
        app.store.get_integration(&account).await.unwrap().unwrap().state,
        IntegrationState::Paused
    );
    assert_eq!(
        recipients(&paused),
        BTreeSet::from(["dev@example.com".to_owned(), "ops@example.com".to_owned()])
    );
    for message in &paused {
        assert_eq!(message["subject"], format!("Webhook deliveries to {url} are paused"));
        assert_eq!(message["from"], "SIPSIM webhooks <alerts@example.com>");
        assert_eq!(message["mail_from"], "alerts@example.com");
        assert_eq!(message["login"], USER, "logged in with the URL's credentials");
        let text = text(message);
        assert!(text.contains(&format!("Endpoint:      {url}\n")), "{text}");
        assert!(text.contains("Last response: HTTP 410 at "), "{text}");
        assert!(text.contains("Reason:        the endpoint answered 410 Gone\n"), "{text}");
        assert!(
            text.contains("See the deliveries: https://hooks.example.com/dashboard/deliveries\n"),
            "{text}"
        );
        let html = message["html"].as_str().unwrap();
        assert!(
            html.contains("<a href=\"https://hooks.example.com/dashboard/deliveries\">"),
            "{html}"
        );
    }
    assert_eq!(paused[0]["message_id"], paused[1]["message_id"], "one notice, two copies");
    // The webhook page tells the account's users what to expect.
    let (session, _, _) = crate::dashboard::login_at(
        &app.url(""),
        "ops@example.com",
        crate::dashboard::PASSWORD,
        false,
    )
    .await;
    let page = crate::helpers::http()
        .get(app.url("/dashboard/integrations/webhooks"))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            "every delivery attempt has failed for 1 hour, when this integration is paused"
        ),
        "{page}"
    );

    // The endpoint is back; a user resumes and the kept event is delivered: the recovery email.
    receiver.answer_from_now_on(Reply::Status(200));
    app.store
        .resume_integration(&account, KeptDeliveries::Deliver, sipsim_core::clock::now_ms())
        .await
        .unwrap();
    receiver.wait_for(2, Duration::from_secs(10)).await;
    let all = sink.wait_for(4, Duration::from_secs(30)).await;
    let recovered = &all[2..];
    assert_eq!(recipients(recovered).len(), 2);
    for message in recovered {
        assert_eq!(message["subject"], format!("Webhook deliveries to {url} are succeeding again"));
        assert!(text(message).contains("Last response: HTTP 200 at "), "{}", text(message));
    }
    // Nothing more: each notice went out once (two more rounds of the notifier pass).
    tokio::time::sleep(NoticeConfig::default().every * 2 + Duration::from_secs(1)).await;
    assert_eq!(sink.messages.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn an_hour_of_failures_emails_once_even_when_the_smtp_server_was_down() {
    // The SMTP server is down at first: its port is taken from a sink that is stopped at once.
    let Some(first) = SmtpSink::start(0) else { return };
    let port = first.port;
    drop(first);
    // "An hour" is a second here; the notifier looks every 200 ms and retries a failed send after 2 s.
    let notices = emails_to(port, Duration::from_secs(1), Duration::from_millis(200));
    let app = TestApp::start(Setup {
        target_policy: TargetPolicy::AllowInsecure,
        notices,
        ..Setup::default()
    })
    .await;
    let receiver = Receiver::always(Reply::Status(503)).await;
    let (account, url) = account_with_users(&app, &receiver).await;
    app.ingest_example(&account, Event::Sms).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    // Failing for longer than "an hour", with no SMTP server to take the email.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let Some(sink) = SmtpSink::start(port) else { return };
    let failing = sink.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(recipients(&failing).len(), 2);
    for message in &failing {
        assert_eq!(message["subject"], format!("Webhook deliveries to {url} are failing"));
        let text = text(message);
        assert!(text.contains(&format!("Endpoint:      {url}\n")), "{text}");
        assert!(text.contains("Last response: HTTP 503 at "), "{text}");
    }
    assert_eq!(
        app.store.get_integration(&account).await.unwrap().unwrap().state,
        IntegrationState::Enabled
    );
    // Still failing, many rounds later: no second email about the same failures.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.messages.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn on_postgresql_one_of_two_nodes_sends_each_email() {
    let Some(sink) = SmtpSink::start(0) else { return };
    let Some(db) = sipsim_store::testing::postgres_test_db("notices_two_nodes").await else {
        return;
    };
    let node = || {
        let notices = emails_to(sink.port, Duration::from_secs(3600), Duration::from_millis(100));
        TestApp::start(Setup {
            target_policy: TargetPolicy::AllowInsecure,
            database_url: Some(db.url().to_owned()),
            notices,
            ..Setup::default()
        })
    };
    let (a, b) = (node().await, node().await);
    let receiver = Receiver::always(Reply::Status(410)).await;
    let (account, _) = account_with_users(&a, &receiver).await;
    b.ingest_example(&account, Event::Sms).await;
    let paused = sink.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(recipients(&paused).len(), 2);
    // Both nodes look ten times a second: a second copy would have come by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.messages.lock().unwrap().len(), 2, "{:#?}", sink.messages.lock().unwrap());
    drop((a, b));
    db.drop_database().await;
}

/// A test CA and a certificate it signed for 127.0.0.1, as PEM files in `dir`: (a bundle of an
/// unrelated CA then the test CA, so only reading every certificate of the file trusts it; cert;
/// key).
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let new_ca = || {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap()
    };
    let (unrelated, ca) = (new_ca(), new_ca());
    let key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let (cert_path, key_path) = (dir.join("smtp.pem"), dir.join("smtp.key"));
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let bundle = format!("{}{}", unrelated.pem(), ca.pem());
    (bundle, cert_path.display().to_string(), key_path.display().to_string())
}

#[tokio::test]
async fn starttls_and_smtps_check_the_servers_certificate() {
    use sipsim_server::notify::mail::{Email, Mailer};
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let email = Email {
        subject: "Webhook deliveries to https://crm.example.com/hooks are failing".into(),
        text: "Last response: HTTP 503\n".into(),
        html: "<p>Last response: HTTP 503</p>\n".into(),
        message_id: "notice.failing.1.acc@hooks.example.com".into(),
    };
    for (mode, url) in [
        ("--starttls", "smtp://127.0.0.1:{port}?tls=required"),
        ("--tls", "smtps://127.0.0.1:{port}"),
    ] {
        let Some(sink) = SmtpSink::with_args(&[mode, "--cert", &cert, &key]) else { return };
        let settings = |extra_ca_pem: Option<Vec<u8>>| MailSettings {
            smtp: SmtpUrl::parse(&url.replace("{port}", &sink.port.to_string())).unwrap(),
            from: "alerts@example.com".parse().unwrap(),
            extra_ca_pem,
        };
        // The test CA is no public root: refused, as any unknown certificate is.
        let untrusted = Mailer::new(&settings(None)).unwrap().send("ops@example.com", &email).await;
        let error = untrusted.expect_err("an unknown CA is refused");
        assert!(error.to_lowercase().contains("certificate"), "{mode}: {error}");
        // Trusted through SIPSIM_EXTRA_CA_CERTS: delivered over TLS.
        let mailer = Mailer::new(&settings(Some(ca.clone().into_bytes()))).unwrap();
        mailer.send("ops@example.com", &email).await.unwrap_or_else(|e| panic!("{mode}: {e}"));
        let got = sink.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1, "{mode}: only the trusted connection sent a message");
        assert_eq!(got[0]["subject"], email.subject);
        assert_eq!(got[0]["text"], email.text);
    }
}

/// `sipsimd notify test --to ADDRESS`: an operator checks the SMTP settings with one command.
#[tokio::test]
async fn notify_test_sends_a_sample_through_the_configured_server() {
    let Some(sink) = SmtpSink::start(0) else { return };
    let notify = |url: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sipsimd"));
        command.args(["notify", "test", "--to", "ops@example.com", "--json"]);
        command
            .env_remove("SIPSIM_SMTP_URL")
            .env_remove("SIPSIM_SMTP_FROM")
            .env_remove("SIPSIM_CONFIG");
        if let Some(url) = url {
            command.env("SIPSIM_SMTP_URL", url).env("SIPSIM_SMTP_FROM", "alerts@example.com");
        }
        command.env("SIPSIM_PUBLIC_URL", "https://hooks.example.com").output().unwrap()
    };
    let good = format!(
        "smtp://{USER}:{}@127.0.0.1:{}",
        PASSWORD.replace('@', "%40").replace(':', "%3A"),
        sink.port
    );
    let sent = notify(Some(&good));
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let answer: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(answer["sent"], true);
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0]["rcpt_tos"], serde_json::json!(["ops@example.com"]));
    assert_eq!(
        got[0]["subject"],
        "[test of sipsimd's SMTP settings] Webhook deliveries to https://crm.example.com/webhooks/sipsim are failing"
    );
    assert!(text(&got[0]).contains("Last response: HTTP 503 at "), "{}", text(&got[0]));

    // A wrong password: the server's refusal, a failed exit, and the password nowhere.
    let wrong = format!("smtp://{USER}:not-the-password@127.0.0.1:{}", sink.port);
    let refused = notify(Some(&wrong));
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(said.contains("did not take the email") && said.contains("535"), "{said}");
    assert!(!said.contains("not-the-password"), "{said}");
    // No settings: it says so.
    let off = notify(None);
    assert!(!off.status.success());
    assert!(String::from_utf8_lossy(&off.stdout).contains("failure emails are off"));
    assert_eq!(sink.messages.lock().unwrap().len(), 1);
}
