//! The dashboard in a real headless browser (Debian's Chromium driven through ChromeDriver): what a
//! person does with a mouse, checked through what they would see and through the public API.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/ensure-chromium.sh` installs
//! them). Without them the test says so and passes, unless `CI=true`, where it fails.
//! With `SIPSIM_SCREENSHOTS_DIR=DIR` it saves a PNG of each page there (README shows those in
//! `docs/screenshots/`).

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sipsim_core::queue::{DeliveryFilter, DeliveryStatus};
use sipsim_testkit::receiver::{Receiver, Reply};

use crate::dashboard::{PASSWORD, user};
use crate::helpers::{Fetch, TestApp};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A ChromeDriver process, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser session, or `None` (after saying so) when Chromium is not installed.
async fn browser(profile: &std::path::Path) -> Option<(Client, Driver)> {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
        if sipsim_store::testing::required() {
            panic!(
                "{CHROMIUM} or {CHROMEDRIVER} is missing, and CI=true requires the browser tests"
            );
        }
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTE: the dashboard's browser tests were NOT run: install chromium and chromium-driver \
             (scripts/ensure-chromium.sh).\n"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                "--disable-dev-shm-usage", "--window-size=1200,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a ChromeDriver session");
    Some((client, driver))
}

/// Saves a screenshot of the current page when `SIPSIM_SCREENSHOTS_DIR` is set.
async fn screenshot(browser: &Client, name: &str) {
    if let Ok(dir) = std::env::var("SIPSIM_SCREENSHOTS_DIR") {
        let png = browser.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// The text of the page's notice.
async fn notice(browser: &Client) -> String {
    match browser.find(Locator::Css(".notice")).await {
        Ok(n) => n.text().await.unwrap(),
        Err(_) => panic!(
            "no notice on {}:\n{}",
            browser.current_url().await.unwrap(),
            browser.source().await.unwrap()
        ),
    }
}

/// The text of the element `css` names.
async fn text_of(browser: &Client, css: &str) -> String {
    let element = browser.find(Locator::Css(css)).await.unwrap();
    element.text().await.unwrap()
}

/// A property (`checked`, `textContent`) of the element `css` names.
async fn prop_of(browser: &Client, css: &str, name: &str) -> Option<String> {
    let element = browser.find(Locator::Css(css)).await.unwrap();
    element.prop(name).await.unwrap()
}

async fn fill(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Clicks what `css` names, and waits for the page it leads to to load (a click returns before the
/// navigation it starts). For clicks that do not navigate use [`toggle`].
async fn click(browser: &Client, css: &str) {
    browser.execute("window.__beforeClick = true", vec![]).await.unwrap();
    toggle(browser, css).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let loaded = browser
            .execute(
                "return window.__beforeClick === undefined && document.readyState === 'complete'",
                vec![],
            )
            .await
            .unwrap_or(Value::Bool(false));
        if loaded == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "clicking {css} led nowhere");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Clicks what `css` names (a checkbox), without waiting for a navigation.
async fn toggle(browser: &Client, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

async fn path(browser: &Client) -> String {
    browser.current_url().await.unwrap().path().to_owned()
}

/// Whether the account has a delivery of `message` in `status`.
async fn has_delivery(
    app: &TestApp,
    account: &sipsim_core::AccountId,
    message: &str,
    status: DeliveryStatus,
) -> bool {
    let filter = DeliveryFilter { status: Some(status), ..DeliveryFilter::default() };
    app.store
        .list_deliveries(account, &filter, None, 100)
        .await
        .unwrap()
        .iter()
        .any(|d| d.message_id.as_str() == message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sets_up_webhooks_with_a_mouse() {
    let profile = tempfile::tempdir().unwrap();
    let Some((browser, _driver)) = browser(profile.path()).await else {
        return;
    };
    let app = TestApp::spawn_allowing_local_targets().await;
    let (account, email) = user(&app).await;

    // A receiver that records what it gets; the test makes it fail, then recover.
    let rx = Receiver::answering(&[]).await;
    let receiver = rx.url("/hook");

    // Log in.
    browser.goto(&app.url("/dashboard")).await.unwrap();
    assert_eq!(path(&browser).await, "/dashboard/login");
    screenshot(&browser, "login").await;
    fill(&browser, "#email", &email).await;
    fill(&browser, "#password", "not the password").await;
    click(&browser, "button[type=submit]").await;
    assert_eq!(notice(&browser).await, "Wrong email or password.");
    fill(&browser, "#password", PASSWORD).await;
    click(&browser, "button[type=submit]").await;
    assert_eq!(path(&browser).await, "/dashboard/integrations");
    screenshot(&browser, "integrations").await;

    // Integrations → Webhooks → Connect, with a URL the rules refuse first.
    click(&browser, "a.button").await;
    assert_eq!(path(&browser).await, "/dashboard/integrations/webhooks");
    fill(&browser, "#webhook_url", "ftp://example.com/hook").await;
    toggle(&browser, "input[value=incoming_call_start]").await;
    click(&browser, "form[action='/dashboard/integrations/webhooks'] button").await;
    let refused = notice(&browser).await;
    assert!(refused.starts_with("The webhook URL cannot be used"), "{refused}");
    assert!(
        prop_of(&browser, "input[value=incoming_call_start]", "checked").await.as_deref()
            == Some("true"),
        "what was ticked stays ticked"
    );
    fill(&browser, "#webhook_url", &receiver).await;
    toggle(&browser, "input[value=sms]").await;
    click(&browser, "form[action='/dashboard/integrations/webhooks'] button").await;
    assert!(notice(&browser).await.starts_with("Connected."));
    screenshot(&browser, "webhooks").await;

    // The signing secret: revealed, then regenerated (the old one stays valid for a day).
    let secret_of = |browser: Client| async move {
        prop_of(&browser, "#signing-secret", "textContent").await.unwrap()
    };
    let first = secret_of(browser.clone()).await;
    assert!(first.starts_with("whsec_"), "{first}");
    browser.execute("window.confirm = () => true", vec![]).await.unwrap();
    click(&browser, "form[action='/dashboard/integrations/webhooks/secret'] button").await;
    assert!(notice(&browser).await.starts_with("New signing secret generated."));
    let second = secret_of(browser.clone()).await;
    assert!(second.starts_with("whsec_") && second != first);
    let stored = app.store.get_integration(&account).await.unwrap().unwrap();
    assert_eq!(stored.signing_secret.expose(), second);
    assert_eq!(stored.previous_signing_secret.map(|(s, _)| s.expose().to_owned()), Some(first));

    // Send Test shows the documented result line.
    click(&browser, "form[action='/dashboard/integrations/webhooks/test'] button").await;
    assert_eq!(notice(&browser).await, "Success (HTTP 200)");
    assert_eq!(rx.requests().len(), 1);

    // An API client made in the dashboard works on /oauth/token, and the API sees the ticked events.
    browser.goto(&app.url("/dashboard/clients")).await.unwrap();
    fill(&browser, "#name", "CRM").await;
    toggle(&browser, "input[value='webhooks.write']").await;
    click(&browser, "form[action='/dashboard/clients'] button").await;
    let client_id = text_of(&browser, "#new-client-id").await;
    let client_secret = text_of(&browser, "#new-client-secret").await;
    screenshot(&browser, "clients").await;
    let token: Value = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &client_secret),
            ("scope", "webhooks.read webhooks.write"),
        ])
        .fetch_json()
        .await;
    let access = token["access_token"].as_str().unwrap_or_else(|| panic!("{token}")).to_owned();
    let (status, _, settings) = app.get("/api/v2/webhooks", &access).await;
    assert_eq!(status, 200);
    assert_eq!(settings["data"], json!([{ "event": "incoming_call_start" }, { "event": "sms" }]));
    // The API's write scope works on what the dashboard connected, and the dashboard shows it.
    let (status, _, enabled) = app.post("/api/v2/webhooks/voicemail", &access).await;
    assert_eq!(status, 200);
    assert_eq!(enabled["data"]["webhook_url"], receiver.as_str());
    assert_eq!(enabled["data"]["enabled"], true);
    browser.goto(&app.url("/dashboard/integrations/webhooks")).await.unwrap();
    let voicemail = browser.find(Locator::Css("input[value=voicemail]")).await.unwrap();
    assert_eq!(voicemail.prop("checked").await.unwrap().as_deref(), Some("true"));

    // A failing receiver: the delivery fails for good (three quick attempts in tests), shows up as
    // failed, and a Resend after the receiver is fixed delivers it.
    rx.answer_from_now_on(Reply::Status(500));
    app.ingest_example(&account, sipsim_core::Event::Sms).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        browser.goto(&app.url("/dashboard/deliveries?status=failed&event=sms")).await.unwrap();
        if browser.find(Locator::Css("td.status.failed")).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the delivery never showed as failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last_day = text_of(&browser, "#last-day").await;
    assert!(last_day.contains("attempt(s)") && last_day.contains("% succeeded"), "{last_day}");
    assert!(browser.find(Locator::Css("svg rect")).await.is_ok(), "the chart has bars");
    screenshot(&browser, "deliveries").await;
    click(&browser, "td a").await;
    let status = browser.find(Locator::Css("#delivery-status")).await.unwrap();
    assert_eq!(status.text().await.unwrap(), "failed");
    assert!(
        browser.source().await.unwrap().contains("HTTP 500"),
        "the attempts show the receiver's answer"
    );
    screenshot(&browser, "delivery").await;
    rx.answer_from_now_on(Reply::Status(200));
    click(&browser, "form[action$='/resend'] button").await;
    assert!(notice(&browser).await.starts_with("Queued again"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        browser.refresh().await.unwrap();
        let text = text_of(&browser, "#delivery-status").await;
        if text == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the resent delivery is {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // "Resend all failed since…": another event fails for good, the receiver is fixed, one click.
    rx.answer_from_now_on(Reply::Status(500));
    let body = app.ingest_example(&account, sipsim_core::Event::Voicemail).await;
    let message = body["data"][0]["message_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has_delivery(&app, &account, &message, DeliveryStatus::Failed).await {
        assert!(Instant::now() < deadline, "the voicemail never failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rx.answer_from_now_on(Reply::Status(200));
    browser.goto(&app.url("/dashboard/deliveries")).await.unwrap();
    click(&browser, "form[action='/dashboard/deliveries/resend-failed'] button").await;
    assert_eq!(notice(&browser).await, "1 failed delivery(ies) queued again.");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if has_delivery(&app, &account, &message, DeliveryStatus::Succeeded).await {
            break;
        }
        assert!(Instant::now() < deadline, "the resent voicemail was not delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // "Where is call X?": the search box lists one call's deliveries, oldest first: the voicemail
    // of call_abc123 that failed, its resend, and nothing of the SMS.
    browser.goto(&app.url("/dashboard/deliveries")).await.unwrap();
    fill(&browser, "input[name=call]", "call_abc123").await;
    click(&browser, "form[method=get] button").await;
    let mut rows = Vec::new();
    for row in browser.find_all(Locator::Css("table tr td:nth-child(2)")).await.unwrap() {
        rows.push(row.text().await.unwrap());
    }
    let statuses = browser.find_all(Locator::Css("td.status")).await.unwrap();
    let mut states = Vec::new();
    for s in statuses {
        states.push(s.text().await.unwrap());
    }
    assert_eq!(rows, ["voicemail"; 2]);
    assert_eq!(states, ["failed", "succeeded"]);
    assert_eq!(
        prop_of(&browser, "input[name=call]", "value").await.as_deref(),
        Some("call_abc123")
    );
    fill(&browser, "input[name=call]", "call_nobody").await;
    click(&browser, "form[method=get] button").await;
    assert!(text_of(&browser, "table").await.contains("No deliveries for call call_nobody."));

    // A form whose CSRF token was taken out is refused, and changes nothing.
    browser.goto(&app.url("/dashboard/integrations/webhooks")).await.unwrap();
    browser
        .execute("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())", vec![])
        .await
        .unwrap();
    fill(&browser, "#webhook_url", "http://127.0.0.1:1/elsewhere").await;
    click(&browser, "form[action='/dashboard/integrations/webhooks'] button").await;
    assert!(browser.source().await.unwrap().contains("security token is missing or stale"));
    let kept = app.store.get_integration(&account).await.unwrap().unwrap();
    assert_eq!(kept.webhook_url.as_str(), receiver);

    // Log out: the dashboard is closed again.
    browser.goto(&app.url("/dashboard/integrations")).await.unwrap();
    click(&browser, "form[action='/dashboard/logout'] button").await;
    assert_eq!(path(&browser).await, "/dashboard/login");
    browser.goto(&app.url("/dashboard/clients")).await.unwrap();
    assert_eq!(path(&browser).await, "/dashboard/login");
    browser.close().await.unwrap();
}
