//! What every dashboard page shares: rendering a template, the notice on top, the navigation, and
//! [`PageError`], which handlers return with `?`.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sipsim_core::StoreError;

use super::{Authed, html};

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

/// A plain page saying what went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = MessagePage {
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        message: message.to_owned(),
    };
    render(status, &page)
}

/// Why a page could not be shown: a handler's `?` turns a store failure into one.
#[derive(Debug)]
pub enum PageError {
    /// The store failed: logged with its cause, shown without it.
    Store(StoreError),
    /// What the URL names does not exist for this account (the message says what).
    NotFound(&'static str),
    /// The URL asks for something that cannot be (the message says what).
    BadRequest(&'static str),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::Store(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Store(e) => {
                tracing::error!(error = %crate::error::error_chain(&e), "dashboard store operation failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side. Please try again.",
                )
            }
            PageError::NotFound(what) => error_page(StatusCode::NOT_FOUND, what),
            PageError::BadRequest(what) => error_page(StatusCode::BAD_REQUEST, what),
        }
    }
}

/// What a dashboard handler returns.
pub type PageResult = Result<Response, PageError>;

/// A message shown at the top of a page.
pub struct Notice {
    /// `ok`, `error` or `warn` (its CSS class).
    pub kind: &'static str,
    /// What to say.
    pub text: String,
}

impl Notice {
    /// Something worked.
    pub fn ok(text: impl Into<String>) -> Option<Notice> {
        Some(Notice { kind: "ok", text: text.into() })
    }

    /// Something did not.
    pub fn error(text: impl Into<String>) -> Option<Notice> {
        Some(Notice { kind: "error", text: text.into() })
    }
}

/// What the layout needs: the section, who is logged in, and the CSRF token for its forms.
pub struct Nav {
    /// The section highlighted.
    pub section: &'static str,
    /// Who is logged in.
    pub email: String,
    /// The session's CSRF token, for the log-out form.
    pub csrf: String,
}

impl Nav {
    /// The layout of `section` for `authed`.
    pub fn of(authed: &Authed, section: &'static str) -> Nav {
        Nav { section, email: authed.user.email.clone(), csrf: authed.session.csrf_token.clone() }
    }
}

/// A page with a title and one message.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    /// Its title.
    pub title: String,
    /// Its message.
    pub message: String,
}
