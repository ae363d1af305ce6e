//! The integrations overview and the webhook settings page: URL, events, the switch, the signing
//! secret, *Send Test*, removing, and resuming a paused integration. The rules and their side
//! effects are the service's (`service::integrations`); this file reads forms and renders.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use sipsim_core::EventSet;
use sipsim_core::clock::{now_ms, rfc3339_seconds_from_ms};
use sipsim_core::event::{Event, EventGroup};
use sipsim_core::secret::SigningSecret;
use sipsim_core::store::{
    DeliveryRate, Integration, IntegrationState, IntegrationUpdate, KeptDeliveries,
};
use sipsim_core::target::WebhookUrl;

use super::page::{Nav, Notice, PageResult, render};
use super::{Authed, Posted};
use crate::state::AppState;
use crate::test_event::{self, TestError};

#[derive(Template)]
#[template(path = "integrations.html")]
struct IntegrationsPage {
    nav: Nav,
    notice: Option<Notice>,
    state: Option<&'static str>,
}

pub async fn integrations(State(state): State<AppState>, authed: Authed) -> PageResult {
    let integration = state.store.get_integration(&authed.user.account_id).await?;
    let page = IntegrationsPage {
        nav: Nav::of(&authed, "integrations"),
        notice: None,
        state: integration.map(|i| i.state.as_str()),
    };
    Ok(render(StatusCode::OK, &page))
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
    /// The secret as Standard Webhooks libraries take it, when that is not the secret itself.
    standard_secret: Option<String>,
    previous_until: Option<String>,
    /// The maximum deliveries per second, empty when unset.
    max_rate: String,
    /// Deliveries waiting or being sent.
    backlog: u64,
    /// Attempts in flight at once now and the cap, when this process delivers.
    concurrency: Option<(u32, u32)>,
    /// When failure emails are on: after how long failing deliveries make one ("1 hour").
    failure_emails_after: Option<String>,
}

/// A duration as the page says it: "1 hour", "90 minutes", "30 seconds".
fn in_words(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
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
    backlog: u64,
    notice: Option<Notice>,
) -> WebhooksPage {
    WebhooksPage {
        failure_emails_after: state.failure_emails_after.map(in_words),
        max_rate: integration.and_then(|i| i.max_rate).map(|r| r.to_string()).unwrap_or_default(),
        backlog,
        nav: Nav::of(authed, "integrations"),
        notice,
        exists: integration.is_some(),
        url: integration.map_or_else(String::new, |i| i.webhook_url.as_str().to_owned()),
        enabled: integration.is_some_and(|i| i.state != IntegrationState::Disabled),
        state: integration.map_or("none", |i| i.state.as_str()),
        paused_reason: integration
            .filter(|i| i.state == IntegrationState::Paused)
            .map(|i| i.paused_reason.clone().unwrap_or_else(|| "paused".to_owned())),
        groups: groups(integration.map_or(EventSet::empty(), |i| i.events)),
        secret: integration.map(|i| i.signing_secret.expose().to_owned()),
        standard_secret: integration.and_then(|i| i.signing_secret.other_standard_form()),
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
) -> PageResult {
    let integration = state.store.get_integration(&authed.user.account_id).await?;
    let backlog = state.store.backlog(&authed.user.account_id).await?;
    let page = webhooks_page(state, authed, integration.as_ref(), backlog, notice);
    Ok(render(status, &page))
}

/// The settings page of `integration` as it now is, with `notice` on top.
async fn show_saved(
    state: &AppState,
    authed: &Authed,
    integration: &Integration,
    notice: Option<Notice>,
) -> PageResult {
    let backlog = state.store.backlog(&authed.user.account_id).await?;
    let page = webhooks_page(state, authed, Some(integration), backlog, notice);
    Ok(render(StatusCode::OK, &page))
}

/// The settings page with an error on top: the action was not done.
async fn refuse(state: &AppState, authed: &Authed, why: impl Into<String>) -> PageResult {
    show_webhooks(state, authed, StatusCode::BAD_REQUEST, Notice::error(why)).await
}

pub async fn webhooks(State(state): State<AppState>, authed: Authed) -> PageResult {
    show_webhooks(&state, &authed, StatusCode::OK, None).await
}

pub async fn save_webhooks(
    State(state): State<AppState>,
    Posted { authed, form }: Posted,
) -> PageResult {
    let account = &authed.user.account_id;
    let current = state.store.get_integration(account).await?;
    let raw_url = form.get("webhook_url").unwrap_or_default().trim();
    let mut events = EventSet::empty();
    for name in form.all("events") {
        match Event::subscribable(name) {
            Some(e) => events = events.with(e),
            None => {
                let why = format!("'{name}' is not an event you can subscribe to.");
                return refuse(&state, &authed, why).await;
            }
        }
    }
    let url = match WebhookUrl::parse(raw_url, state.target_policy) {
        Ok(u) => u,
        Err(e) => {
            // Keep what the user typed and ticked, and say what is wrong with the URL.
            let why = Notice::error(format!("The webhook URL cannot be used: {e}."));
            let backlog = state.store.backlog(&authed.user.account_id).await?;
            let mut page = webhooks_page(&state, &authed, current.as_ref(), backlog, why);
            page.url = raw_url.to_owned();
            page.groups = groups(events);
            return Ok(render(StatusCode::BAD_REQUEST, &page));
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
    let (integration, created) = state.service().save_integration(account, update).await?;
    tracing::info!(account_id = %account, user_id = %authed.user.id, created, "webhook integration saved from the dashboard");
    let text =
        if created { "Connected. Events you ticked will be sent to your URL." } else { "Saved." };
    show_saved(&state, &authed, &integration, Notice::ok(text)).await
}

pub async fn send_test(State(state): State<AppState>, Posted { authed, .. }: Posted) -> PageResult {
    let account = &authed.user.account_id;
    match test_event::send_test(&*state.store, &state.sender, account).await {
        Ok(result) => {
            let notice =
                Some(Notice { kind: if result.ok { "ok" } else { "error" }, text: result.result });
            show_webhooks(&state, &authed, StatusCode::OK, notice).await
        }
        Err(TestError::NoIntegration(_)) => {
            refuse(&state, &authed, "Connect a webhook URL first.").await
        }
        Err(TestError::Store(e)) => Err(e.into()),
    }
}

pub async fn remove_webhooks(
    State(state): State<AppState>,
    Posted { authed, .. }: Posted,
) -> PageResult {
    state.service().remove_integration(&authed.user.account_id).await?;
    let notice = Notice::ok("The webhook integration was removed.");
    show_webhooks(&state, &authed, StatusCode::OK, notice).await
}

pub async fn regenerate_secret(
    State(state): State<AppState>,
    Posted { authed, .. }: Posted,
) -> PageResult {
    let done = "New signing secret generated.";
    replace_secret(&state, &authed, SigningSecret::generate(), done).await
}

/// "Use a secret you already have": the customer's own secret replaces the current one, which
/// keeps signing `webhook-signature` for a day, as a regeneration's does.
pub async fn use_own_secret(
    State(state): State<AppState>,
    Posted { authed, form }: Posted,
) -> PageResult {
    match SigningSecret::brought(form.get("signing_secret").unwrap_or_default()) {
        Ok(secret) => {
            replace_secret(&state, &authed, secret, "Your signing secret is in use.").await
        }
        Err(why) => {
            let why = format!("That signing secret cannot be used: {why}.");
            refuse(&state, &authed, &why).await
        }
    }
}

/// Gives the integration `secret` and shows the page saying `done` and until when the old secret
/// still signs `webhook-signature`.
async fn replace_secret(
    state: &AppState,
    authed: &Authed,
    secret: SigningSecret,
    done: &str,
) -> PageResult {
    let account = &authed.user.account_id;
    let Some((integration, until)) = state.service().replace_secret(account, &secret).await? else {
        return refuse(state, authed, "Connect a webhook URL first.").await;
    };
    tracing::info!(account_id = %account, user_id = %authed.user.id, "signing secret replaced");
    let notice = Notice::ok(format!(
        "{done} X-Webhook-Signature uses it from now on; \
         webhook-signature also carries the old one's until {}.",
        rfc3339_seconds_from_ms(until)
    ));
    show_saved(state, authed, &integration, notice).await
}

/// "Maximum deliveries per second": empty removes the throttle.
pub async fn set_rate(
    State(state): State<AppState>,
    Posted { authed, form }: Posted,
) -> PageResult {
    let text = form.get("max_rate").unwrap_or_default().trim();
    let rate = match text {
        "" => None,
        given => match DeliveryRate::parse(given) {
            Some(rate) => Some(rate),
            None => {
                let why = "The maximum rate is a number of deliveries per second from 0.001 to \
                           10000 (at most three decimals), or empty for none.";
                return refuse(&state, &authed, why).await;
            }
        },
    };
    let account = &authed.user.account_id;
    let Some(integration) = state.service().set_delivery_rate(account, rate).await? else {
        return refuse(&state, &authed, "Connect a webhook URL first.").await;
    };
    let notice = match rate {
        Some(rate) => Notice::ok(format!(
            "At most {rate} deliveries per second from now on; events above it wait in the queue, in order."
        )),
        None => Notice::ok("No maximum rate: deliveries go out as fast as your endpoint answers."),
    };
    show_saved(&state, &authed, &integration, notice).await
}

pub async fn resume_webhooks(
    State(state): State<AppState>,
    Posted { authed, form }: Posted,
) -> PageResult {
    let kept = match form.get("kept") {
        Some("deliver") => KeptDeliveries::Deliver,
        Some("drop") => KeptDeliveries::Drop,
        _ => {
            let why = "Choose whether to deliver or drop the kept events.";
            return refuse(&state, &authed, why).await;
        }
    };
    let resumed = state.service().resume_integration(&authed.user.account_id, kept).await?;
    let notice = match resumed {
        None => Notice::error("The integration is not paused."),
        Some(n) => {
            let what = match kept {
                KeptDeliveries::Deliver => "being delivered now",
                KeptDeliveries::Drop => "dropped",
            };
            Notice::ok(format!("Resumed. {n} kept event(s) {what}."))
        }
    };
    show_webhooks(&state, &authed, StatusCode::OK, notice).await
}
