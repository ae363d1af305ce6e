//! The dashboard over plain HTTP: sessions, cookie flags, CSRF, the login limits. The browser
//! tests (`browser.rs`) drive the same pages in Chromium.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use sipsim_core::secret::SigningSecret;
use sipsim_server::service::users::hash_password;

use crate::helpers::{Fetch, TestApp};
use crate::process::argv;

pub const PASSWORD: &str = "correct horse battery staple";

/// Creates a dashboard user for a new account; returns the account and the email.
pub async fn user(app: &TestApp) -> (sipsim_core::AccountId, String) {
    let account = app.account().await;
    let email = format!("{}@example.com", account.as_str());
    let hash = hash_password(PASSWORD).unwrap();
    app.store.create_user(&account, &email, &hash).await.unwrap();
    (account, email)
}

/// A client without redirects, to see them.
fn client() -> reqwest::Client {
    sipsim_delivery::install_crypto_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The `name=value` of a Set-Cookie for `name`, and the whole header.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

/// The value of the hidden `csrf` field in a page.
fn csrf_field(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Logs in; returns the session cookie (`name=value`) and the session's CSRF token.
async fn login(app: &TestApp, email: &str, forwarded_https: bool) -> (String, String, String) {
    login_at(&app.url(""), email, PASSWORD, forwarded_https).await
}

/// Logs in to the server at `base` with `password`.
pub async fn login_at(
    base: &str,
    email: &str,
    password: &str,
    forwarded_https: bool,
) -> (String, String, String) {
    let url = |path: &str| format!("{base}{path}");
    let http = client();
    let page = http.get(url("/dashboard/login")).fetch().await;
    let (login_cookie, _) = set_cookie(&page, "sipsim_login_csrf").unwrap();
    let token = csrf_field(&page.text().await.unwrap());
    let mut req = http.post(url("/dashboard/login")).header(COOKIE, login_cookie).form(&[
        ("csrf", token.as_str()),
        ("email", email),
        ("password", password),
    ]);
    if forwarded_https {
        req = req.header("x-forwarded-proto", "https");
    }
    let resp = req.fetch().await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/dashboard/integrations");
    let (session, header) = set_cookie(&resp, "sipsim_session").unwrap();
    let page =
        http.get(url("/dashboard/integrations/webhooks")).header(COOKIE, &session).fetch().await;
    assert_eq!(page.status(), 200);
    let csrf = csrf_field(&page.text().await.unwrap());
    (session, csrf, header)
}

#[tokio::test]
async fn pages_need_a_session_and_cookies_carry_their_flags() {
    let app = TestApp::spawn().await;
    let http = client();
    let resp = http.get(app.url("/dashboard/integrations")).fetch().await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/dashboard/login");
    let resp = http
        .get(app.url("/dashboard/integrations"))
        .header(COOKIE, "sipsim_session=forged")
        .fetch()
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "an unknown session");

    let (_, email) = user(&app).await;
    let (_, _, header) = login(&app, &email, false).await;
    assert!(header.contains("HttpOnly"), "{header}");
    assert!(header.contains("SameSite=Lax"), "{header}");
    assert!(header.contains("Path=/dashboard"), "{header}");
    assert!(!header.contains("Secure"), "plain HTTP: {header}");
    let (session, csrf, header) = login(&app, &email, true).await;
    assert!(header.contains("; Secure"), "behind HTTPS: {header}");

    // Logging out ends the session on the server, not only in the browser.
    let resp = http
        .post(app.url("/dashboard/logout"))
        .header(COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .fetch()
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let resp = http.get(app.url("/dashboard/integrations")).header(COOKIE, &session).fetch().await;
    assert_eq!(resp.headers()[LOCATION], "/dashboard/login");
}

#[tokio::test]
async fn forms_without_their_csrf_token_are_refused_and_change_nothing() {
    let app = TestApp::spawn_allowing_local_targets().await;
    let (account, email) = user(&app).await;
    let (session, csrf, _) = login(&app, &email, false).await;
    let http = client();
    for token in [None, Some("wrong"), Some(&csrf[..csrf.len() - 1])] {
        let mut form = vec![("webhook_url", "http://127.0.0.1:9/hook"), ("events", "sms")];
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        let resp = http
            .post(app.url("/dashboard/integrations/webhooks"))
            .header(COOKIE, &session)
            .form(&form)
            .fetch()
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "token {token:?}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(resp.text().await.unwrap().contains("security token"));
    }
    assert!(app.store.get_integration(&account).await.unwrap().is_none());
    // The login form needs its own token too.
    let resp = http
        .post(app.url("/dashboard/login"))
        .form(&[("email", email.as_str()), ("password", PASSWORD)])
        .fetch()
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // With the token, the same form works.
    let resp = http
        .post(app.url("/dashboard/integrations/webhooks"))
        .header(COOKIE, &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("webhook_url", "http://127.0.0.1:9/hook"),
            ("events", "sms"),
            ("events", "voicemail"),
        ])
        .fetch()
        .await;
    assert_eq!(resp.status(), 200);
    let saved = app.store.get_integration(&account).await.unwrap().unwrap();
    assert_eq!(saved.setting().subscribed_events, ["voicemail", "sms"]);
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_rate_limited() {
    let app = TestApp::spawn().await;
    let (_, email) = user(&app).await;
    let http = client();
    let attempt = |password: &'static str| {
        let (http, app, email) = (http.clone(), app.url("/dashboard/login"), email.clone());
        async move {
            let page = http.get(&app).fetch().await;
            let (cookie, _) = set_cookie(&page, "sipsim_login_csrf").unwrap();
            let token = csrf_field(&page.text().await.unwrap());
            let resp = http
                .post(&app)
                .header(COOKIE, cookie)
                .form(&[("csrf", token.as_str()), ("email", &email), ("password", password)])
                .fetch()
                .await;
            let status = resp.status();
            (status, resp.text().await.unwrap())
        }
    };
    for _ in 0..5 {
        let (status, body) = attempt("wrong password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("Wrong email or password."));
    }
    // The sixth is refused without checking, even with the right password.
    let (status, body) = attempt(PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("Too many failed attempts"), "{body}");
    // Another user from the same address logs in at once: failures lock out their own email only.
    let (_, other) = user(&app).await;
    login(&app, &other, false).await;
}

/// A login form ready to post: its double-submit cookie and token.
async fn login_form(http: &reqwest::Client, base: &str) -> (String, String) {
    let page = http.get(format!("{base}/dashboard/login")).fetch().await;
    let (cookie, _) = set_cookie(&page, "sipsim_login_csrf").unwrap();
    (cookie, csrf_field(&page.text().await.unwrap()))
}

/// Posts a login from `address` (`X-Forwarded-For`, believed from a trusted proxy); the status.
fn post_login(
    http: &reqwest::Client,
    base: &str,
    form: &(String, String),
    address: &str,
    email: &str,
    password: &str,
) -> impl Future<Output = StatusCode> + Send + 'static {
    let request = http
        .post(format!("{base}/dashboard/login"))
        .header(COOKIE, &form.0)
        .header("x-forwarded-for", address)
        .form(&[("csrf", form.1.as_str()), ("email", email), ("password", password)]);
    async move { request.fetch().await.status() }
}

#[tokio::test]
async fn failed_logins_lock_out_their_address_and_email_never_the_user() {
    let app = TestApp::spawn_behind_proxy().await;
    let (_, alice) = user(&app).await;
    let (_, bob) = user(&app).await;
    let http = client();
    let base = app.url("");
    let form = login_form(&http, &base).await;

    // Thirty wrong passwords for Alice at once from one address: each counts before the password is
    // checked, so exactly five are checked and the rest refused without hashing.
    let guesses: Vec<_> = (0..30)
        .map(|_| {
            tokio::spawn(post_login(&http, &base, &form, "203.0.113.1", &alice, "guess123456"))
        })
        .collect();
    let statuses = crate::helpers::joined(guesses).await;
    // Nothing but 401 (checked) and 429 (refused before checking).
    assert_eq!(crate::helpers::tally(&statuses), [(401, 5), (429, 25)].into(), "{statuses:?}");
    let status = post_login(&http, &base, &form, "203.0.113.1", &alice, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Bob, from that address, and Alice, from her own, log in at once.
    let status = post_login(&http, &base, &form, "203.0.113.1", &bob, PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let status = post_login(&http, &base, &form, "198.51.100.2", &alice, PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // An address that tries twenty emails is refused whole.
    for i in 0..20 {
        let email = format!("nobody{i}@example.com");
        let status = post_login(&http, &base, &form, "203.0.113.50", &email, "guess123456").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let status = post_login(&http, &base, &form, "203.0.113.50", &bob, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let status = post_login(&http, &base, &form, "198.51.100.3", &bob, PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

/// Peak resident memory of a process, from /proc (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_keeps_memory_bounded_and_the_door_open() {
    // The real server process, so its own peak memory can be read. Each argon2 check holds
    // 19 MiB: 200 at once took it to gigabytes before checks were bounded.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("flood.db").display());
    let account = crate::helpers::operator(&db, &["account", "create", "Flood"])["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = crate::helpers::operator(
        &db,
        argv!("user create --account {account} --email real@example.com"),
    );
    let password = created["password"].as_str().unwrap().to_owned();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sipsimd"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("SIPSIM_DATABASE_URL", &db)
        .env("SIPSIM_TRUSTED_PROXIES", "127.0.0.1");
    let server = crate::helpers::Server::spawn(cmd);
    let pid = server.child.id();
    let http = client();
    let form = login_form(&http, &server.base).await;
    let before = peak_rss_mib(pid);

    // 200 wrong logins at once, each from its own address for its own email (so the failure
    // limits let every one through to the password check), plus 100 for one email from one
    // address.
    let mut flood = Vec::new();
    for i in 0..200 {
        let address = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let email = format!("user{i}@example.com");
        flood.push(tokio::spawn(post_login(
            &http,
            &server.base,
            &form,
            &address,
            &email,
            "wrong-password",
        )));
    }
    for _ in 0..100 {
        flood.push(tokio::spawn(post_login(
            &http,
            &server.base,
            &form,
            "203.0.113.7",
            "real@example.com",
            "wrong-password",
        )));
    }
    let mut answers = std::collections::BTreeMap::new();
    for f in flood {
        *answers.entry(f.await.unwrap().as_u16()).or_insert(0) += 1;
    }
    // Wrong passwords are 401, the flood beyond the checks' queue 503 (come back), the one email
    // beyond its five failures 429. Nothing else.
    assert!(answers.keys().all(|s| [401, 429, 503].contains(s)), "{answers:?}");
    assert!(answers.get(&429).copied().unwrap_or(0) >= 95, "{answers:?}");
    let peak = peak_rss_mib(pid);
    println!("login flood: {answers:?}; peak RSS {before} MiB before, {peak} MiB after");
    assert!(peak < 150, "peak RSS {peak} MiB (was {before} MiB before the flood)");

    // The right password, from an address that just flooded, gets in at once.
    let status =
        post_login(&http, &server.base, &form, "198.18.0.1", "real@example.com", &password).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_paused_integration_says_why_and_resumes_from_the_page() {
    let app = TestApp::spawn().await;
    let (account, email) = user(&app).await;
    app.integration(&account, "https://example.com/hook", &["sms"]).await;
    app.store.pause_integration(&account, "the endpoint answered 410 Gone", 0).await.unwrap();
    let (session, csrf, _) = login(&app, &email, false).await;
    let http = client();
    let page = http
        .get(app.url("/dashboard/integrations/webhooks"))
        .header(COOKIE, &session)
        .fetch_text()
        .await;
    assert!(page.contains("Paused:</strong> the endpoint answered 410 Gone"), "{page}");
    assert!(page.contains("Resume and deliver kept events"));
    assert!(page.contains("Resume and drop kept events"));
    let resumed = http
        .post(app.url("/dashboard/integrations/webhooks/resume"))
        .header(COOKIE, &session)
        .form(&[("csrf", csrf.as_str()), ("kept", "deliver")])
        .fetch()
        .await;
    assert_eq!(resumed.status(), 200);
    assert!(resumed.text().await.unwrap().contains("Resumed. 0 kept event(s)"));
    let now = app.store.get_integration(&account).await.unwrap().unwrap();
    assert_eq!(now.state, sipsim_core::store::IntegrationState::Enabled);
}

#[tokio::test]
async fn a_resend_redirects_so_reloading_queues_nothing_more() {
    let app = TestApp::spawn().await;
    let (account, email) = user(&app).await;
    let receiver = sipsim_testkit::receiver::Receiver::answering(&[]).await;
    app.local_integration(&account, &receiver.url("/hook"), &["sms"]).await;
    app.ingest_example(&account, sipsim_core::Event::Sms).await;
    let count = || async {
        app.store.list_deliveries(&account, &Default::default(), None, 100).await.unwrap()
    };
    let original = count().await[0].id.clone();
    let (session, csrf, _) = login(&app, &email, false).await;
    let http = client();
    let resp = http
        .post(app.url(&format!("/dashboard/deliveries/{original}/resend")))
        .header(COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .fetch()
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/dashboard/deliveries/dlv_") && location.ends_with("?done=resent"),
        "{location}"
    );
    assert_eq!(count().await.len(), 2);
    for _ in 0..2 {
        let page = http.get(app.url(&location)).header(COOKIE, &session).fetch().await;
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("Queued again"));
    }
    assert_eq!(count().await.len(), 2, "reloading queued nothing more");
}

/// POSTs a dashboard form with the session cookie; the status and the page.
async fn post_form(
    http: &reqwest::Client,
    app: &TestApp,
    session: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String) {
    let resp = http.post(app.url(path)).header(COOKIE, session).form(form).fetch().await;
    (resp.status(), resp.text().await.unwrap())
}

/// "Use a secret you already have": the customer's SIPSIM secret signs from now on, in both
/// schemes, while the replaced one keeps signing `webhook-signature` for a day.
#[tokio::test]
async fn a_customers_own_signing_secret_signs_from_the_page() {
    use sipsim_core::signing::{verify_sipsim, verify_standard};
    let app = TestApp::spawn_allowing_local_targets().await;
    let (account, email) = user(&app).await;
    let (session, csrf, _) = login(&app, &email, false).await;
    let http = client();
    let path = "/dashboard/integrations/webhooks/own-secret";
    let use_own = async |secret: &str| {
        post_form(&http, &app, &session, path, &[("csrf", &csrf), ("signing_secret", secret)]).await
    };
    let own = "my SIPSIM secret, moving over";
    let (status, page) = use_own(own).await;
    assert_eq!(status, 400);
    assert!(page.contains("Connect a webhook URL first."), "{page}");

    let receiver = sipsim_testkit::receiver::Receiver::answering(&[]).await;
    app.local_integration(&account, &receiver.url("/hook"), &["sms"]).await;
    let generated = app.store.get_integration(&account).await.unwrap().unwrap().signing_secret;
    for (short, why) in [("too short", "at least 16 bytes"), (" leading space, 16+", "space")] {
        let (status, page) = use_own(short).await;
        assert_eq!(status, 400);
        assert!(
            page.contains("That signing secret cannot be used") && page.contains(why),
            "{page}"
        );
    }
    let (status, page) = use_own(own).await;
    assert_eq!(status, 200);
    assert!(page.contains("Your signing secret is in use."), "{page}");
    let standard = SigningSecret::brought(own).unwrap().for_standard_webhooks();
    assert!(page.contains(&standard), "the page shows the Standard Webhooks form");
    let stored = app.store.get_integration(&account).await.unwrap().unwrap();
    assert_eq!(stored.signing_secret.expose(), own);
    assert_eq!(stored.previous_signing_secret.map(|(s, _)| s), Some(generated.clone()));

    // A delivery verifies with the customer's secret as SIPSIM's receivers check it, and with
    // the Standard Webhooks form; the replaced secret still verifies webhook-signature.
    app.ingest_example(&account, sipsim_core::Event::Sms).await;
    let got = receiver.wait_for(1, std::time::Duration::from_secs(10)).await;
    let r = &got[0];
    let (ts, id) = (r.header("x-webhook-timestamp"), r.header("webhook-id"));
    assert_eq!(verify_sipsim(own, ts, r.header("x-webhook-signature"), &r.body), Ok(()));
    let now = ts.parse().unwrap();
    let signature = r.header("webhook-signature");
    assert_eq!(verify_standard(&standard, id, ts, signature, &r.body, now), Ok(()));
    assert_eq!(verify_standard(generated.expose(), id, ts, signature, &r.body, now), Ok(()));
}

/// "Maximum deliveries per second" on the webhook page: set, shown with the backlog, refused when
/// it is no rate, removed when emptied.
#[tokio::test]
async fn a_maximum_rate_is_set_on_the_webhook_page_which_shows_the_backlog() {
    let app = TestApp::spawn().await;
    let (account, email) = user(&app).await;
    app.integration(&account, "https://example.com/hook", &["sms"]).await;
    for _ in 0..3 {
        // Never sent (example.com is not reached in tests, and nothing dispatches here): waiting.
        app.ingest_example(&account, sipsim_core::Event::Sms).await;
    }
    let (session, csrf, _) = login(&app, &email, false).await;
    let http = client();
    let path = "/dashboard/integrations/webhooks/rate";
    let set = async |rate: &str| {
        post_form(&http, &app, &session, path, &[("csrf", &csrf), ("max_rate", rate)]).await
    };
    let (status, page) = set("2.5").await;
    assert_eq!(status, 200);
    assert!(page.contains("At most 2.5 deliveries per second from now on"), "{page}");
    assert!(page.contains(r#"name="max_rate" value="2.5""#), "{page}");
    let backlog = page.split(r#"<strong id="backlog">"#).nth(1).and_then(|r| r.split('<').next());
    assert!(backlog.is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n <= 3)), "{backlog:?}");
    // This server has no SMTP server: the page says failure emails are off.
    assert!(page.contains("Off on this server: its operator has not configured an SMTP server."));
    let stored = app.store.get_integration(&account).await.unwrap().unwrap().max_rate;
    assert_eq!(stored.map(|r| r.milli()), Some(2500));
    for bad in ["fast", "0", "-2", "0.0001", "20000"] {
        let (status, page) = set(bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(page.contains("The maximum rate is a number of deliveries per second"), "{bad}");
    }
    let (status, page) = set("").await;
    assert_eq!(status, 200);
    assert!(page.contains("No maximum rate"), "{page}");
    assert_eq!(app.store.get_integration(&account).await.unwrap().unwrap().max_rate, None);
}
