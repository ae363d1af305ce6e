//! The account's API clients: listing, creating (the secret shown once) and deleting.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sipsim_core::clock::rfc3339_seconds_from_ms;
use sipsim_core::{ClientId, Scope, ScopeSet};

use super::page::{Nav, Notice, PageError, PageResult, render};
use super::{Authed, Posted};
use crate::state::AppState;

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

/// The longest name a client may be given, in characters.
const MAX_NAME_CHARS: usize = 100;

async fn show_clients(
    state: &AppState,
    authed: &Authed,
    status: StatusCode,
    notice: Option<Notice>,
    created: Option<Created>,
) -> PageResult {
    let clients = state.store.list_clients(&authed.user.account_id).await?;
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
    Ok(render(status, &page))
}

/// The clients page with an error on top: nothing was created.
async fn refuse(state: &AppState, authed: &Authed, why: impl Into<String>) -> PageResult {
    show_clients(state, authed, StatusCode::BAD_REQUEST, Notice::error(why), None).await
}

pub async fn clients(State(state): State<AppState>, authed: Authed) -> PageResult {
    show_clients(&state, &authed, StatusCode::OK, None, None).await
}

pub async fn create_client(
    State(state): State<AppState>,
    Posted { authed, form }: Posted,
) -> PageResult {
    let mut scopes = ScopeSet::empty();
    for name in form.all("scopes") {
        match Scope::parse(name) {
            Some(s) => scopes = scopes.with(s),
            None => return refuse(&state, &authed, format!("'{name}' is not a scope.")).await,
        }
    }
    if scopes.is_empty() {
        return refuse(&state, &authed, "Tick at least one scope.").await;
    }
    let name = match form.get("name").map(str::trim) {
        Some(n) if !n.is_empty() && n.chars().count() <= MAX_NAME_CHARS => n.to_owned(),
        Some(n) if !n.is_empty() => {
            let why = "The name is too long (100 characters at most).";
            return refuse(&state, &authed, why).await;
        }
        _ => "API client".to_owned(),
    };
    let (client, secret) =
        state.service().create_client(&authed.user.account_id, name, scopes).await?;
    let created = Created { id: client.id.to_string(), secret: secret.expose().to_owned() };
    let notice = Notice::ok("API client created. Copy its secret now: it is shown only once.");
    show_clients(&state, &authed, StatusCode::OK, notice, Some(created)).await
}

pub async fn delete_client(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    Posted { authed, .. }: Posted,
) -> PageResult {
    let not_found = PageError::NotFound("There is no such API client.");
    let id = ClientId::parse(&client_id).map_err(|_| not_found)?;
    // Only the account's own clients can be deleted.
    let deleted = state.service().delete_client(Some(&authed.user.account_id), &id).await?;
    if !deleted {
        return Err(PageError::NotFound("There is no such API client."));
    }
    let notice = Notice::ok("API client deleted; its tokens no longer work.");
    show_clients(&state, &authed, StatusCode::OK, notice, None).await
}
