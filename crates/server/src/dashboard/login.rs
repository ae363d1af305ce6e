//! Logging in and out. The login form, shown before there is a session, carries a double-submit
//! token (a cookie and a hidden field that must match); failures are limited per address and
//! email, counted before the password is checked.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use sipsim_core::clock::now_ms;
use sipsim_core::secret::SecretHash;
use sipsim_core::store::Session;

use super::auth::{self, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL};
use super::page::{PageResult, render};
use super::{Authed, Form, Posted, csrf_refused, redirect, with_cookie};
use crate::client_addr::ClientAddr;
use crate::state::AppState;

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
    let page = LoginPage { csrf: csrf.clone(), email: email.to_owned(), error };
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
) -> PageResult {
    let form = Form::parse(&body);
    let expected = auth::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !form.csrf_ok(expected) {
        return Ok(csrf_refused());
    }
    let email = form.get("email").unwrap_or_default().trim().to_owned();
    let password = form.get("password").unwrap_or_default().to_owned();
    // Counted as a failure before the password is checked, and forgiven if it is right: concurrent
    // guesses cannot all slip in while the first is being checked.
    let attempt = match state.login_failures.attempt(addr, &login_subject(&email)) {
        Ok(counted) => counted,
        Err(wait) => {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            return Ok(login_page(
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &email,
                Some(format!(
                    "Too many failed attempts. Try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                )),
            ));
        }
    };
    let user = match state.store.get_user_by_email(&email).await {
        Ok(u) => u,
        Err(e) => {
            attempt.forget();
            return Err(e.into());
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
            page.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("2"));
            return Ok(page);
        }
    };
    let Some(user) = user.filter(|_| verified) else {
        attempt.failed();
        return Ok(login_page(
            &headers,
            StatusCode::UNAUTHORIZED,
            &email,
            Some("Wrong email or password.".into()),
        ));
    };
    attempt.succeeded();
    let token = auth::random_token();
    let session = Session {
        token_hash: SecretHash::of(&token),
        user_id: user.id.clone(),
        csrf_token: auth::random_token(),
        expires_at_ms: now_ms() + SESSION_TTL.as_millis() as i64,
    };
    state.store.create_session(&session).await?;
    tracing::info!(user_id = %user.id, account_id = %user.account_id, "dashboard login");
    let secure = auth::is_https(&headers);
    let response = with_cookie(
        redirect("/dashboard/integrations"),
        &auth::set_cookie(SESSION_COOKIE, &token, SESSION_TTL, secure),
    );
    Ok(with_cookie(
        response,
        &auth::set_cookie(LOGIN_CSRF_COOKIE, "", std::time::Duration::ZERO, secure),
    ))
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Posted { authed, .. }: Posted,
) -> PageResult {
    state.store.delete_session(&authed.session.token_hash).await?;
    Ok(with_cookie(
        redirect("/dashboard/login"),
        &auth::set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO, auth::is_https(&headers)),
    ))
}
