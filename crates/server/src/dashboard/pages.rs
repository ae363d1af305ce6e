//! The dashboard's pages and form handlers.
//!
//! Every POST checks the session's CSRF token before anything else; every page is rendered from a
//! compiled template (auto-escaped). Results of an action are shown on the page it returns.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use sipsim_core::clock::{now_ms, rfc3339_seconds_from_ms};
use sipsim_core::event::{Event, EventGroup};
use sipsim_core::queue::{DeliveryFilter, DeliveryRecord, DeliveryStatus};
use sipsim_core::secret::{ClientSecret, SecretHash, SigningSecret};
use sipsim_core::store::{
    Integration, IntegrationState, IntegrationUpdate, KeptDeliveries, NewApiClient, Session,
};
use sipsim_core::target::WebhookUrl;
use sipsim_core::{ClientId, DeliveryId, EventSet, Scope, ScopeSet, StoreError};

use super::auth::{self, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL};
use super::{Authed, Form, csrf_refused, error_page, html, redirect, see_other, with_cookie};
use crate::client_addr::ClientAddr;
use crate::state::AppState;

/// Renders a template, or a plain error page if it cannot be rendered (a bug).
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(error = %e, "rendering a dashboard page failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Error</title><p>Something went wrong on our side.</p>"
                    .into(),
            )
        }
    }
}

/// A store failure, logged with its cause and shown without it.
fn store_failed(e: StoreError) -> Response {
    tracing::error!(error = %crate::error::error_chain(&e), "dashboard store operation failed");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side. Please try again.",
    )
}

/// A message shown at the top of a page.
pub struct Notice {
    /// `ok`, `error` or `warn` (its CSS class).
    pub kind: &'static str,
    /// What to say.
    pub text: String,
}

impl Notice {
    fn ok(text: impl Into<String>) -> Option<Notice> {
        Some(Notice {
            kind: "ok",
            text: text.into(),
        })
    }

    fn error(text: impl Into<String>) -> Option<Notice> {
        Some(Notice {
            kind: "error",
            text: text.into(),
        })
    }
}

/// What the layout needs: the section, who is logged in, and the CSRF token for its forms.
pub struct Nav {
    section: &'static str,
    email: String,
    csrf: String,
}

impl Nav {
    fn of(authed: &Authed, section: &'static str) -> Nav {
        Nav {
            section,
            email: authed.user.email.clone(),
            csrf: authed.session.csrf_token.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    email: String,
    error: Option<String>,
}

pub async fn home(_authed: Authed) -> Response {
    redirect("/dashboard/integrations")
}

fn login_page(
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    error: Option<String>,
) -> Response {
    // A fresh double-submit token for every form shown.
    let csrf = auth::random_token();
    let page = LoginPage {
        csrf: csrf.clone(),
        email: email.to_owned(),
        error,
    };
    let cookie = auth::set_cookie(
        LOGIN_CSRF_COOKIE,
        &csrf,
        std::time::Duration::from_secs(3600),
        auth::is_https(headers),
    );
    with_cookie(render(status, &page), &cookie)
}

/// The subject a login's failures count against: the email as stored (lowercased), and no longer
/// than an email can be, so made-up 16 KiB "emails" cost nothing more.
fn login_subject(email: &str) -> String {
    email.to_lowercase().chars().take(254).collect()
}

pub async fn login_form(headers: HeaderMap) -> Response {
    login_page(&headers, StatusCode::OK, "", None)
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let expected = auth::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !form.csrf_ok(expected) {
        return csrf_refused();
    }
    let email = form.get("email").unwrap_or_default().trim().to_owned();
    let password = form.get("password").unwrap_or_default().to_owned();
    // Counted as a failure before the password is checked, and forgiven if it is right: concurrent
    // guesses cannot all slip in while the first is being checked.
    let attempt = match state.login_failures.attempt(addr, &login_subject(&email)) {
        Ok(counted) => counted,
        Err(wait) => {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            return login_page(
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &email,
                Some(format!(
                    "Too many failed attempts. Try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                )),
            );
        }
    };
    let user = match state.store.get_user_by_email(&email).await {
        Ok(u) => u,
        Err(e) => {
            attempt.forget();
            return store_failed(e);
        }
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verified = match state.password_checks.verify(password, stored).await {
        Ok(verified) => verified,
        Err(auth::ChecksBusy) => {
            attempt.forget();
            let mut page = login_page(
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                &email,
                Some(
                    "The server is busy checking other logins. Try again in a few seconds.".into(),
                ),
            );
            page.headers_mut()
                .insert(RETRY_AFTER, axum::http::HeaderValue::from_static("2"));
            return page;
        }
    };
    let Some(user) = user.filter(|_| verified) else {
        attempt.failed();
        return login_page(
            &headers,
            StatusCode::UNAUTHORIZED,
            &email,
            Some("Wrong email or password.".into()),
        );
    };
    attempt.succeeded();
    let token = auth::random_token();
    let session = Session {
        token_hash: SecretHash::of(&token),
        user_id: user.id.clone(),
        csrf_token: auth::random_token(),
        expires_at_ms: now_ms() + SESSION_TTL.as_millis() as i64,
    };
    if let Err(e) = state.store.create_session(&session).await {
        return store_failed(e);
    }
    tracing::info!(user_id = %user.id, account_id = %user.account_id, "dashboard login");
    let secure = auth::is_https(&headers);
    let response = with_cookie(
        redirect("/dashboard/integrations"),
        &auth::set_cookie(SESSION_COOKIE, &token, SESSION_TTL, secure),
    );
    with_cookie(
        response,
        &auth::set_cookie(LOGIN_CSRF_COOKIE, "", std::time::Duration::ZERO, secure),
    )
}

pub async fn logout(
    State(state): State<AppState>,
    authed: Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    if let Err(e) = state.store.delete_session(&authed.session.token_hash).await {
        return store_failed(e);
    }
    with_cookie(
        redirect("/dashboard/login"),
        &auth::set_cookie(
            SESSION_COOKIE,
            "",
            std::time::Duration::ZERO,
            auth::is_https(&headers),
        ),
    )
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct IntegrationsPage {
    nav: Nav,
    notice: Option<Notice>,
    state: Option<&'static str>,
}

pub async fn integrations(State(state): State<AppState>, authed: Authed) -> Response {
    let integration = match state.store.get_integration(&authed.user.account_id).await {
        Ok(i) => i,
        Err(e) => return store_failed(e),
    };
    let page = IntegrationsPage {
        nav: Nav::of(&authed, "integrations"),
        notice: None,
        state: integration.map(|i| i.state.as_str()),
    };
    render(StatusCode::OK, &page)
}

struct EventRow {
    name: &'static str,
    description: &'static str,
    checked: bool,
}

struct Group {
    title: &'static str,
    events: Vec<EventRow>,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    nav: Nav,
    notice: Option<Notice>,
    exists: bool,
    url: String,
    enabled: bool,
    state: &'static str,
    paused_reason: Option<String>,
    groups: Vec<Group>,
    secret: Option<String>,
    previous_until: Option<String>,
    /// Attempts in flight at once now and the cap, when this process delivers.
    concurrency: Option<(u32, u32)>,
}

/// The catalog grouped as SIPSIM groups it, with `events` ticked.
fn groups(events: EventSet) -> Vec<Group> {
    [
        (EventGroup::IncomingCalls, "Incoming calls"),
        (EventGroup::OutgoingCalls, "Outgoing calls"),
        (EventGroup::Additional, "Additional events"),
    ]
    .into_iter()
    .map(|(group, title)| Group {
        title,
        events: Event::CATALOG
            .into_iter()
            .filter(|e| e.group() == group)
            .map(|e| EventRow {
                name: e.name(),
                description: e.description(),
                checked: events.contains(e),
            })
            .collect(),
    })
    .collect()
}

fn webhooks_page(
    state: &AppState,
    authed: &Authed,
    integration: Option<&Integration>,
    notice: Option<Notice>,
) -> WebhooksPage {
    WebhooksPage {
        nav: Nav::of(authed, "integrations"),
        notice,
        exists: integration.is_some(),
        url: integration.map_or_else(String::new, |i| i.webhook_url.as_str().to_owned()),
        enabled: integration.is_some_and(|i| i.state != IntegrationState::Disabled),
        state: integration.map_or("none", |i| i.state.as_str()),
        paused_reason: integration
            .filter(|i| i.state == IntegrationState::Paused)
            .map(|i| {
                i.paused_reason
                    .clone()
                    .unwrap_or_else(|| "paused".to_owned())
            }),
        groups: groups(integration.map_or(EventSet::empty(), |i| i.events)),
        secret: integration.map(|i| i.signing_secret.expose().to_owned()),
        previous_until: integration
            .and_then(|i| i.previous_signing_secret.as_ref())
            .filter(|(_, until)| *until > now_ms())
            .map(|(_, until)| rfc3339_seconds_from_ms(*until)),
        concurrency: integration.and_then(|i| {
            let limits = state.concurrency.get()?;
            Some((limits.limit(&i.account_id), limits.cap()))
        }),
    }
}

/// The settings page of the account's integration, with `notice` on top.
async fn show_webhooks(
    state: &AppState,
    authed: &Authed,
    status: StatusCode,
    notice: Option<Notice>,
) -> Response {
    match state.store.get_integration(&authed.user.account_id).await {
        Ok(i) => render(status, &webhooks_page(state, authed, i.as_ref(), notice)),
        Err(e) => store_failed(e),
    }
}

pub async fn webhooks(State(state): State<AppState>, authed: Authed) -> Response {
    show_webhooks(&state, &authed, StatusCode::OK, None).await
}

pub async fn save_webhooks(State(state): State<AppState>, authed: Authed, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if !form.csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let account = &authed.user.account_id;
    let current = match state.store.get_integration(account).await {
        Ok(i) => i,
        Err(e) => return store_failed(e),
    };
    let raw_url = form.get("webhook_url").unwrap_or_default().trim();
    let mut events = EventSet::empty();
    for name in form.all("events") {
        match Event::from_name(name).filter(|e| e.bit().is_some()) {
            Some(e) => events = events.with(e),
            None => {
                return show_webhooks(
                    &state,
                    &authed,
                    StatusCode::BAD_REQUEST,
                    Notice::error(format!("'{name}' is not an event you can subscribe to.")),
                )
                .await;
            }
        }
    }
    let url = match WebhookUrl::parse(raw_url, state.target_policy) {
        Ok(u) => u,
        Err(e) => {
            // Keep what the user typed and ticked, and say what is wrong with the URL.
            let mut page = webhooks_page(
                &state,
                &authed,
                current.as_ref(),
                Notice::error(format!("The webhook URL cannot be used: {e}.")),
            );
            page.url = raw_url.to_owned();
            page.groups = groups(events);
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    // A new integration starts enabled; an existing one follows the switch.
    let disabled = current.is_some() && form.get("enabled").is_none();
    let update = IntegrationUpdate {
        webhook_url: url,
        disabled,
        events: Some(events),
        new_signing_secret: SigningSecret::generate(),
    };
    let saved = state.store.put_integration(account, update).await;
    state.integrations.forget(account);
    match saved {
        Ok((integration, created)) => {
            tracing::info!(account_id = %account, user_id = %authed.user.id, created, "webhook integration saved from the dashboard");
            let text = if created {
                "Connected. Events you ticked will be sent to your URL."
            } else {
                "Saved."
            };
            render(
                StatusCode::OK,
                &webhooks_page(&state, &authed, Some(&integration), Notice::ok(text)),
            )
        }
        Err(e) => store_failed(e),
    }
}

pub async fn send_test(State(state): State<AppState>, authed: Authed, body: Bytes) -> Response {
    if !Form::parse(&body).csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let account = &authed.user.account_id;
    match crate::test_event::send_test(&*state.store, &state.sender, account).await {
        Ok(result) => {
            let notice = Some(Notice {
                kind: if result.ok { "ok" } else { "error" },
                text: result.result,
            });
            show_webhooks(&state, &authed, StatusCode::OK, notice).await
        }
        Err(crate::test_event::TestError::NoIntegration(_)) => {
            show_webhooks(
                &state,
                &authed,
                StatusCode::BAD_REQUEST,
                Notice::error("Connect a webhook URL first."),
            )
            .await
        }
        Err(crate::test_event::TestError::Store(e)) => store_failed(e),
    }
}

pub async fn remove_webhooks(
    State(state): State<AppState>,
    authed: Authed,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let removed = state
        .store
        .remove_integration(&authed.user.account_id)
        .await;
    state.integrations.forget(&authed.user.account_id);
    match removed {
        Ok(_) => {
            show_webhooks(
                &state,
                &authed,
                StatusCode::OK,
                Notice::ok("The webhook integration was removed."),
            )
            .await
        }
        Err(e) => store_failed(e),
    }
}

/// How long the old signing secret keeps working after a regeneration.
const OLD_SECRET_VALID_MS: i64 = 24 * 3600 * 1000;

pub async fn regenerate_secret(
    State(state): State<AppState>,
    authed: Authed,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let account = &authed.user.account_id;
    let until = now_ms() + OLD_SECRET_VALID_MS;
    let rotated = state
        .store
        .rotate_signing_secret(account, &SigningSecret::generate(), until)
        .await;
    state.integrations.forget(account);
    match rotated {
        Ok(Some(integration)) => {
            tracing::info!(account_id = %account, user_id = %authed.user.id, "signing secret regenerated");
            let notice = Notice::ok(format!(
                "New signing secret generated. X-Webhook-Signature uses it from now on; \
                 webhook-signature also carries the old one's until {}.",
                rfc3339_seconds_from_ms(until)
            ));
            render(
                StatusCode::OK,
                &webhooks_page(&state, &authed, Some(&integration), notice),
            )
        }
        Ok(None) => {
            show_webhooks(
                &state,
                &authed,
                StatusCode::BAD_REQUEST,
                Notice::error("Connect a webhook URL first."),
            )
            .await
        }
        Err(e) => store_failed(e),
    }
}

pub async fn resume_webhooks(
    State(state): State<AppState>,
    authed: Authed,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !form.csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let kept = match form.get("kept") {
        Some("deliver") => KeptDeliveries::Deliver,
        Some("drop") => KeptDeliveries::Drop,
        _ => {
            return show_webhooks(
                &state,
                &authed,
                StatusCode::BAD_REQUEST,
                Notice::error("Choose whether to deliver or drop the kept events."),
            )
            .await;
        }
    };
    let resumed = state
        .store
        .resume_integration(&authed.user.account_id, kept, now_ms())
        .await;
    state.integrations.forget(&authed.user.account_id);
    let notice = match resumed {
        Ok(None) => Notice::error("The integration is not paused."),
        Ok(Some(n)) => {
            state.wake.notify_one();
            let what = match kept {
                KeptDeliveries::Deliver => "being delivered now",
                KeptDeliveries::Drop => "dropped",
            };
            Notice::ok(format!("Resumed. {n} kept event(s) {what}."))
        }
        Err(e) => return store_failed(e),
    };
    show_webhooks(&state, &authed, StatusCode::OK, notice).await
}

struct ClientRow {
    id: String,
    name: String,
    scopes: String,
    created: String,
    last_used: String,
}

struct Created {
    id: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "clients.html")]
struct ClientsPage {
    nav: Nav,
    notice: Option<Notice>,
    clients: Vec<ClientRow>,
    created: Option<Created>,
}

async fn show_clients(
    state: &AppState,
    authed: &Authed,
    status: StatusCode,
    notice: Option<Notice>,
    created: Option<Created>,
) -> Response {
    let clients = match state.store.list_clients(&authed.user.account_id).await {
        Ok(c) => c,
        Err(e) => return store_failed(e),
    };
    let page = ClientsPage {
        nav: Nav::of(authed, "clients"),
        notice,
        clients: clients
            .into_iter()
            .map(|c| ClientRow {
                id: c.id.to_string(),
                name: c.name,
                scopes: c.scopes.to_string(),
                created: rfc3339_seconds_from_ms(c.created_at_ms),
                last_used: c
                    .last_used_at_ms
                    .map_or_else(|| "never".to_owned(), rfc3339_seconds_from_ms),
            })
            .collect(),
        created,
    };
    render(status, &page)
}

pub async fn clients(State(state): State<AppState>, authed: Authed) -> Response {
    show_clients(&state, &authed, StatusCode::OK, None, None).await
}

pub async fn create_client(State(state): State<AppState>, authed: Authed, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if !form.csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let mut scopes = ScopeSet::empty();
    for name in form.all("scopes") {
        match Scope::parse(name) {
            Some(s) => scopes = scopes.with(s),
            None => {
                return show_clients(
                    &state,
                    &authed,
                    StatusCode::BAD_REQUEST,
                    Notice::error(format!("'{name}' is not a scope.")),
                    None,
                )
                .await;
            }
        }
    }
    if scopes.is_empty() {
        return show_clients(
            &state,
            &authed,
            StatusCode::BAD_REQUEST,
            Notice::error("Tick at least one scope."),
            None,
        )
        .await;
    }
    let name = match form.get("name").map(str::trim) {
        Some(n) if !n.is_empty() && n.chars().count() <= 100 => n.to_owned(),
        Some(n) if !n.is_empty() => {
            return show_clients(
                &state,
                &authed,
                StatusCode::BAD_REQUEST,
                Notice::error("The name is too long (100 characters at most)."),
                None,
            )
            .await;
        }
        _ => "API client".to_owned(),
    };
    let secret = ClientSecret::generate();
    let created = state
        .store
        .create_client(NewApiClient {
            account_id: authed.user.account_id.clone(),
            name,
            scopes,
            secret_hash: secret.hash(),
        })
        .await;
    match created {
        Ok(client) => {
            let created = Created {
                id: client.id.to_string(),
                secret: secret.expose().to_owned(),
            };
            show_clients(
                &state,
                &authed,
                StatusCode::OK,
                Notice::ok("API client created. Copy its secret now: it is shown only once."),
                Some(created),
            )
            .await
        }
        Err(e) => store_failed(e),
    }
}

pub async fn delete_client(
    State(state): State<AppState>,
    authed: Authed,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let not_found = || error_page(StatusCode::NOT_FOUND, "There is no such API client.");
    let Ok(id) = ClientId::parse(&client_id) else {
        return not_found();
    };
    // Only the account's own clients can be deleted.
    match state.store.get_client(&id).await {
        Ok(Some(c)) if c.account_id == authed.user.account_id => {}
        Ok(_) => return not_found(),
        Err(e) => return store_failed(e),
    }
    match state.store.delete_client(&id).await {
        Ok(_) => {
            state.revocations.revoke(id);
            show_clients(
                &state,
                &authed,
                StatusCode::OK,
                Notice::ok("API client deleted; its tokens no longer work."),
                None,
            )
            .await
        }
        Err(e) => store_failed(e),
    }
}

struct DeliveryRow {
    id: String,
    event: &'static str,
    status: &'static str,
    attempts: u32,
    created: String,
    next_attempt: String,
    last_response: String,
}

fn delivery_row(d: &DeliveryRecord) -> DeliveryRow {
    DeliveryRow {
        id: d.id.to_string(),
        event: d.event.name(),
        status: d.status.as_str(),
        attempts: d.attempts,
        created: rfc3339_seconds_from_ms(d.created_at_ms),
        next_attempt: d
            .next_attempt_at_ms
            .filter(|_| d.status == DeliveryStatus::Pending)
            .map_or_else(|| "—".to_owned(), rfc3339_seconds_from_ms),
        last_response: match (d.last_status_code, &d.last_error) {
            (Some(code), _) if (200..300).contains(&code) => format!("HTTP {code}"),
            (_, Some(error)) => error.clone(),
            (Some(code), None) => format!("HTTP {code}"),
            (None, None) => "—".to_owned(),
        },
    }
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
    event: Option<String>,
    before: Option<String>,
}

struct Choice {
    value: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    nav: Nav,
    notice: Option<Notice>,
    rows: Vec<DeliveryRow>,
    statuses: Vec<Choice>,
    events: Vec<Choice>,
    older: Option<String>,
    filter_query: String,
    chart: String,
    summary: String,
}

/// Deliveries on one page of the list.
const PAGE: u32 = 50;

pub async fn deliveries(
    State(state): State<AppState>,
    authed: Authed,
    Query(query): Query<DeliveriesQuery>,
) -> Response {
    show_deliveries(&state, &authed, query, None).await
}

const HOUR_MS: i64 = 3_600_000;

/// The last 24 hours as a chart and a sentence.
async fn last_day(state: &AppState, authed: &Authed) -> Result<(String, String), StoreError> {
    let start = (now_ms() / HOUR_MS - 23) * HOUR_MS;
    let buckets = state
        .store
        .attempt_buckets(&authed.user.account_id, start, HOUR_MS)
        .await?;
    let attempts: u64 = buckets.iter().map(|b| b.attempts).sum();
    let succeeded: u64 = buckets.iter().map(|b| b.succeeded).sum();
    let summary = if attempts == 0 {
        "No attempts in the last 24 hours.".to_owned()
    } else {
        let mean = buckets
            .iter()
            .map(|b| b.mean_ms * b.attempts as i64)
            .sum::<i64>()
            / attempts as i64;
        format!(
            "Last 24 hours: {attempts} attempt(s), {:.1} % succeeded, mean latency {mean} ms.",
            succeeded as f64 * 100.0 / attempts as f64
        )
    };
    Ok((
        super::chart::attempts_svg(&buckets, start, HOUR_MS, 24),
        summary,
    ))
}

async fn show_deliveries(
    state: &AppState,
    authed: &Authed,
    query: DeliveriesQuery,
    notice: Option<Notice>,
) -> Response {
    let status = query
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(DeliveryStatus::parse);
    let event = query
        .event
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(Event::from_name);
    let before = query
        .before
        .as_deref()
        .and_then(|b| DeliveryId::parse(b).ok());
    let filter = DeliveryFilter {
        status,
        event,
        since_ms: None,
    };
    let rows = match state
        .store
        .list_deliveries(&authed.user.account_id, &filter, before.as_ref(), PAGE + 1)
        .await
    {
        Ok(r) => r,
        Err(e) => return store_failed(e),
    };
    let more = rows.len() > PAGE as usize;
    let rows: Vec<DeliveryRow> = rows.iter().take(PAGE as usize).map(delivery_row).collect();
    let filter_query = form_urlencoded::Serializer::new(String::new())
        .append_pair("status", status.map_or("", |s| s.as_str()))
        .append_pair("event", event.map_or("", |e| e.name()))
        .finish();
    let (chart, summary) = match last_day(state, authed).await {
        Ok(c) => c,
        Err(e) => return store_failed(e),
    };
    let page = DeliveriesPage {
        nav: Nav::of(authed, "deliveries"),
        notice,
        chart,
        summary,
        older: more.then(|| rows.last().map(|r| r.id.clone())).flatten(),
        rows,
        statuses: ["pending", "delivering", "succeeded", "failed", "paused"]
            .into_iter()
            .map(|value| Choice {
                value,
                selected: status.is_some_and(|s| s.as_str() == value),
            })
            .collect(),
        events: Event::CATALOG
            .into_iter()
            .chain([Event::Test])
            .map(|e| Choice {
                value: e.name(),
                selected: event == Some(e),
            })
            .collect(),
        filter_query,
    };
    render(StatusCode::OK, &page)
}

pub async fn resend_failed(State(state): State<AppState>, authed: Authed, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if !form.csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let no_filter = DeliveriesQuery {
        status: None,
        event: None,
        before: None,
    };
    let Some(hours) = form
        .get("since_hours")
        .and_then(|h| h.parse::<i64>().ok())
        .filter(|h| (1..=24 * 30).contains(h))
    else {
        let notice = Notice::error("Choose how far back to resend failed deliveries.");
        return show_deliveries(&state, &authed, no_filter, notice).await;
    };
    let now = now_ms();
    match state
        .store
        .resend_failed_since(
            &authed.user.account_id,
            now - hours * HOUR_MS,
            now,
            RESEND_AT_ONCE,
        )
        .await
    {
        Ok(n) => {
            if n > 0 {
                state.wake.notify_one();
            }
            let more = if n == u64::from(RESEND_AT_ONCE) {
                " (the most at once; resend again for the rest)"
            } else {
                ""
            };
            let notice = Notice::ok(format!("{n} failed delivery(ies) queued again{more}."));
            show_deliveries(&state, &authed, no_filter, notice).await
        }
        Err(e) => store_failed(e),
    }
}

/// The most deliveries one "resend all failed" queues.
const RESEND_AT_ONCE: u32 = 10_000;

struct AttemptRow {
    number: usize,
    started: String,
    duration_ms: i64,
    result: String,
    response: String,
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    nav: Nav,
    notice: Option<Notice>,
    d: DeliveryRow,
    message_id: String,
    resendable: bool,
    attempts: Vec<AttemptRow>,
    payload: String,
}

/// The logged-in account's delivery `id`; a 404 page for a malformed id or another account's.
async fn own_delivery(
    state: &AppState,
    authed: &Authed,
    id: &str,
) -> Result<DeliveryRecord, Response> {
    let not_found = || error_page(StatusCode::NOT_FOUND, "There is no such delivery.");
    let id = DeliveryId::parse(id).map_err(|_| not_found())?;
    match state.store.get_delivery(&id).await {
        Ok(Some(d)) if d.account_id == authed.user.account_id => Ok(d),
        Ok(_) => Err(not_found()),
        Err(e) => Err(store_failed(e)),
    }
}

async fn show_delivery(
    state: &AppState,
    authed: &Authed,
    id: &str,
    notice: Option<Notice>,
) -> Response {
    let record = match own_delivery(state, authed, id).await {
        Ok(d) => d,
        Err(page) => return page,
    };
    let attempts = match state.store.list_attempts(&record.id).await {
        Ok(a) => a,
        Err(e) => return store_failed(e),
    };
    let body = match state.store.message_body(&record.message_id).await {
        Ok(b) => b.unwrap_or_default(),
        Err(e) => return store_failed(e),
    };
    // Show the JSON indented; it is sent byte for byte as stored.
    let payload = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    let page = DeliveryPage {
        nav: Nav::of(authed, "deliveries"),
        notice,
        d: delivery_row(&record),
        message_id: record.message_id.to_string(),
        resendable: record.event != Event::Test,
        attempts: attempts
            .iter()
            .enumerate()
            .map(|(i, a)| AttemptRow {
                number: i + 1,
                started: rfc3339_seconds_from_ms(a.started_at_ms),
                duration_ms: a.duration_ms,
                result: match (a.status_code, &a.error) {
                    (Some(code), _) => format!("HTTP {code}"),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "—".to_owned(),
                },
                response: a.response_snippet.clone().unwrap_or_default(),
            })
            .collect(),
        payload,
    };
    render(StatusCode::OK, &page)
}

pub async fn delivery(
    State(state): State<AppState>,
    authed: Authed,
    Path(delivery_id): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    // `?done=resent` after a resend's redirect: a fixed notice, never text from the URL.
    let notice = match uri.query() {
        Some("done=resent") => Notice::ok("Queued again as this new delivery (same X-Webhook-Id)."),
        _ => None,
    };
    show_delivery(&state, &authed, &delivery_id, notice).await
}

pub async fn resend(
    State(state): State<AppState>,
    authed: Authed,
    Path(delivery_id): Path<String>,
    body: Bytes,
) -> Response {
    if !Form::parse(&body).csrf_ok(&authed.session.csrf_token) {
        return csrf_refused();
    }
    let original = match own_delivery(&state, &authed, &delivery_id).await {
        Ok(d) => d,
        Err(page) => return page,
    };
    if original.event == Event::Test {
        let notice =
            Notice::error("Test deliveries are not resent: use Send Test to send a new one.");
        return show_delivery(&state, &authed, &delivery_id, notice).await;
    }
    match state
        .store
        .resend(&authed.user.account_id, &original.id, now_ms())
        .await
    {
        Ok(Some(new)) => {
            state.wake.notify_one();
            // Post/Redirect/Get: reloading the new delivery's page must not queue it once more.
            see_other(&format!("/dashboard/deliveries/{}?done=resent", new.id))
        }
        // Deleted between the two reads (retention): as if it never was.
        Ok(None) => error_page(StatusCode::NOT_FOUND, "There is no such delivery."),
        Err(e) => store_failed(e),
    }
}
