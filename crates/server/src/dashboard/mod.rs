//! The dashboard under `/dashboard`: server-rendered HTML that works without JavaScript, where an
//! account's users connect their webhook URL, pick events, send a test, manage API clients and watch
//! deliveries. Templates are compiled in (askama, auto-escaped); no external resource is loaded.

pub mod auth;
mod chart;
mod clients;
mod deliveries;
mod login;
mod page;
mod webhooks;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sipsim_core::clock::now_ms;
use sipsim_core::secret::SecretHash;
use sipsim_core::store::{Session, User};

use crate::state::AppState;
use auth::SESSION_COOKIE;
pub use page::error_page;

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(login::home))
        .route("/dashboard/", get(login::home))
        .route("/dashboard/login", get(login::login_form).post(login::login))
        .route("/dashboard/logout", post(login::logout))
        .route("/dashboard/integrations", get(webhooks::integrations))
        .route(
            "/dashboard/integrations/webhooks",
            get(webhooks::webhooks).post(webhooks::save_webhooks),
        )
        .route("/dashboard/integrations/webhooks/test", post(webhooks::send_test))
        .route("/dashboard/integrations/webhooks/remove", post(webhooks::remove_webhooks))
        .route("/dashboard/integrations/webhooks/resume", post(webhooks::resume_webhooks))
        .route("/dashboard/integrations/webhooks/secret", post(webhooks::regenerate_secret))
        .route("/dashboard/integrations/webhooks/own-secret", post(webhooks::use_own_secret))
        .route("/dashboard/integrations/webhooks/rate", post(webhooks::set_rate))
        .route("/dashboard/clients", get(clients::clients).post(clients::create_client))
        .route("/dashboard/clients/{client_id}/delete", post(clients::delete_client))
        .route("/dashboard/deliveries", get(deliveries::deliveries))
        .route("/dashboard/deliveries/resend-failed", post(deliveries::resend_failed))
        .route("/dashboard/deliveries/{delivery_id}", get(deliveries::delivery))
        .route("/dashboard/deliveries/{delivery_id}/resend", post(deliveries::resend))
}

/// A logged-in user with a live session; extracting it from a request without one redirects to the
/// login page.
pub struct Authed {
    /// Who.
    pub user: User,
    /// Their session (its CSRF token goes into every form).
    pub session: Session,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = auth::cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(redirect("/dashboard/login"));
        };
        match state.store.get_session(&SecretHash::of(token), now_ms()).await {
            Ok(Some((session, user))) => Ok(Authed { user, session }),
            Ok(None) => Err(redirect("/dashboard/login")),
            Err(e) => {
                tracing::error!(error = %crate::error::error_chain(&e), "reading a dashboard session failed");
                Err(error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side. Please try again.",
                ))
            }
        }
    }
}

/// A form a logged-in user posted from their session's pages. Extracting it checks, in this order,
/// the session (without one: to the login page) and the form's CSRF token (a mismatch: `403`),
/// before the handler runs; so a handler that takes it cannot forget either check.
pub struct Posted {
    /// Who posted it.
    pub authed: Authed,
    /// What they posted.
    pub form: Form,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let authed = Authed::from_request_parts(&mut parts, state).await?;
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = Form::parse(&body);
        if !form.csrf_ok(&authed.session.csrf_token) {
            return Err(csrf_refused());
        }
        Ok(Posted { authed, form })
    }
}

/// A submitted form (`application/x-www-form-urlencoded`), with repeated fields kept.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses a form body.
    pub fn parse(body: &Bytes) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether the form's `csrf` field matches `expected` (constant time).
    pub fn csrf_ok(&self, expected: &str) -> bool {
        self.get("csrf").is_some_and(|sent| auth::tokens_match(sent, expected))
    }
}

/// A rendered page: HTML, never cached (it may show secrets).
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// A `303 See Other` to `to`.
pub fn redirect(to: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(LOCATION, HeaderValue::from_static(to));
    response
}

/// A `303 See Other` to a path built at run time (ids are `[a-z0-9_]`, so always a valid header).
pub fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// Adds a `Set-Cookie` header.
pub fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    response
}

/// The answer to a form posted without its session's CSRF token.
pub fn csrf_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This form was not sent from your dashboard session (its security token is missing or \
         stale). Go back, reload the page and try again.",
    )
}
