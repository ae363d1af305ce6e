//! The deliveries list (filters, the 24-hour chart, resend every failed one) and one delivery's
//! page (its attempts, its payload, resend).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sipsim_core::clock::{now_ms, rfc3339_seconds_from_ms};
use sipsim_core::event::Event;
use sipsim_core::queue::{CALL_MAX_LEN, DeliveryFilter, DeliveryRecord, DeliveryStatus};
use sipsim_core::{DeliveryId, StoreError};

use super::page::{Nav, Notice, PageError, PageResult, render};
use super::{Authed, Posted, see_other};
use crate::service::deliveries::{RESEND_AT_ONCE, ResendRefused};
use crate::state::AppState;

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
    /// A `pbx_id` or `call_id`: that call's deliveries, oldest first.
    call: Option<String>,
    /// The last delivery of the previous page.
    after: Option<String>,
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
    /// The next page's cursor, and what the link says.
    next: Option<(String, &'static str)>,
    call: String,
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
) -> PageResult {
    show_deliveries(&state, &authed, query, None).await
}

const HOUR_MS: i64 = 3_600_000;

/// The last 24 hours as a chart and a sentence.
async fn last_day(state: &AppState, authed: &Authed) -> Result<(String, String), StoreError> {
    let start = (now_ms() / HOUR_MS - 23) * HOUR_MS;
    let buckets = state.store.attempt_buckets(&authed.user.account_id, start, HOUR_MS).await?;
    let attempts: u64 = buckets.iter().map(|b| b.attempts).sum();
    let succeeded: u64 = buckets.iter().map(|b| b.succeeded).sum();
    let summary = if attempts == 0 {
        "No attempts in the last 24 hours.".to_owned()
    } else {
        let mean =
            buckets.iter().map(|b| b.mean_ms * b.attempts as i64).sum::<i64>() / attempts as i64;
        format!(
            "Last 24 hours: {attempts} attempt(s), {:.1} % succeeded, mean latency {mean} ms.",
            succeeded as f64 * 100.0 / attempts as f64
        )
    };
    Ok((super::chart::attempts_svg(&buckets, start, HOUR_MS, 24), summary))
}

async fn show_deliveries(
    state: &AppState,
    authed: &Authed,
    query: DeliveriesQuery,
    notice: Option<Notice>,
) -> PageResult {
    let status = query.status.as_deref().filter(|s| !s.is_empty()).and_then(DeliveryStatus::parse);
    let event = query.event.as_deref().filter(|s| !s.is_empty()).and_then(Event::from_name);
    let call = query.call.as_deref().map(str::trim).unwrap_or_default();
    if call.len() > CALL_MAX_LEN {
        return Err(PageError::BadRequest("A pbx_id or call_id is at most 200 characters."));
    }
    let after = query.after.as_deref().and_then(|b| DeliveryId::parse(b).ok());
    let filter = DeliveryFilter {
        status,
        event,
        since_ms: None,
        call: (!call.is_empty()).then(|| call.to_owned()),
    };
    let rows = state
        .store
        .list_deliveries(&authed.user.account_id, &filter, after.as_ref(), PAGE + 1)
        .await?;
    let more = rows.len() > PAGE as usize;
    let rows: Vec<DeliveryRow> = rows.iter().take(PAGE as usize).map(delivery_row).collect();
    let filter_query = form_urlencoded::Serializer::new(String::new())
        .append_pair("status", status.map_or("", |s| s.as_str()))
        .append_pair("event", event.map_or("", |e| e.name()))
        .append_pair("call", call)
        .finish();
    let label = if filter.oldest_first() { "Later deliveries →" } else { "Older deliveries →" };
    let next = more.then(|| rows.last().map(|r| (r.id.clone(), label))).flatten();
    let (chart, summary) = last_day(state, authed).await?;
    let page = DeliveriesPage {
        nav: Nav::of(authed, "deliveries"),
        notice,
        chart,
        summary,
        next,
        call: call.to_owned(),
        rows,
        statuses: ["pending", "delivering", "succeeded", "failed", "paused"]
            .into_iter()
            .map(|value| Choice { value, selected: status.is_some_and(|s| s.as_str() == value) })
            .collect(),
        events: Event::CATALOG
            .into_iter()
            .chain([Event::Test])
            .map(|e| Choice { value: e.name(), selected: event == Some(e) })
            .collect(),
        filter_query,
    };
    Ok(render(StatusCode::OK, &page))
}

pub async fn resend_failed(
    State(state): State<AppState>,
    Posted { authed, form }: Posted,
) -> PageResult {
    let no_filter = DeliveriesQuery { status: None, event: None, call: None, after: None };
    let Some(hours) = form
        .get("since_hours")
        .and_then(|h| h.parse::<i64>().ok())
        .filter(|h| (1..=24 * 30).contains(h))
    else {
        let notice = Notice::error("Choose how far back to resend failed deliveries.");
        return show_deliveries(&state, &authed, no_filter, notice).await;
    };
    let n = state
        .service()
        .resend_failed_since(&authed.user.account_id, now_ms() - hours * HOUR_MS)
        .await?;
    let more = if n == u64::from(RESEND_AT_ONCE) {
        " (the most at once; resend again for the rest)"
    } else {
        ""
    };
    let notice = Notice::ok(format!("{n} failed delivery(ies) queued again{more}."));
    show_deliveries(&state, &authed, no_filter, notice).await
}

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

/// The answer for a delivery id that is malformed or not the account's.
const NO_SUCH_DELIVERY: PageError = PageError::NotFound("There is no such delivery.");

/// The logged-in account's delivery `id`.
async fn own_delivery(
    state: &AppState,
    authed: &Authed,
    id: &str,
) -> Result<DeliveryRecord, PageError> {
    let id = DeliveryId::parse(id).map_err(|_| NO_SUCH_DELIVERY)?;
    state.service().own_delivery(&authed.user.account_id, &id).await?.ok_or(NO_SUCH_DELIVERY)
}

async fn show_delivery(
    state: &AppState,
    authed: &Authed,
    id: &str,
    notice: Option<Notice>,
) -> PageResult {
    let record = own_delivery(state, authed, id).await?;
    let attempts = state.store.list_attempts(&record.id).await?;
    let body = state.store.message_body(&record.message_id).await?.unwrap_or_default();
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
    Ok(render(StatusCode::OK, &page))
}

pub async fn delivery(
    State(state): State<AppState>,
    authed: Authed,
    Path(delivery_id): Path<String>,
    uri: axum::http::Uri,
) -> PageResult {
    // `?done=resent` after a resend's redirect: a fixed notice, never text from the URL.
    let notice = match uri.query() {
        Some("done=resent") => Notice::ok("Queued again as this new delivery (same X-Webhook-Id)."),
        _ => None,
    };
    show_delivery(&state, &authed, &delivery_id, notice).await
}

pub async fn resend(
    State(state): State<AppState>,
    Path(delivery_id): Path<String>,
    Posted { authed, .. }: Posted,
) -> PageResult {
    let id = DeliveryId::parse(&delivery_id).map_err(|_| NO_SUCH_DELIVERY)?;
    let refused = match state.service().resend(&authed.user.account_id, &id).await {
        // Post/Redirect/Get: reloading the new delivery's page must not queue it once more.
        Ok(new) => {
            return Ok(see_other(&format!("/dashboard/deliveries/{}?done=resent", new.id)));
        }
        Err(ResendRefused::NotFound) => return Err(NO_SUCH_DELIVERY),
        Err(ResendRefused::Store(e)) => return Err(e.into()),
        Err(ResendRefused::NoIntegration) => "Connect a webhook URL first.".to_owned(),
        Err(refused @ ResendRefused::TestEvent) => refused.to_string(),
    };
    show_delivery(&state, &authed, &delivery_id, Notice::error(refused)).await
}
