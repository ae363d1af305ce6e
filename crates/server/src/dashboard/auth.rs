//! Dashboard authentication: argon2 passwords, session cookies, CSRF tokens and the login limiter.
//!
//! A session is a random 256-bit token in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` when the
//! request came over HTTPS); the database keeps only its SHA-256, with the session's CSRF token and
//! its end (12 h after login). Every form carries the CSRF token and every POST compares it in
//! constant time. The login form, before there is a session, uses a double-submit token: a cookie
//! and a hidden field that must match.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// The session cookie.
pub const SESSION_COOKIE: &str = "sipsim_session";
/// The login form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "sipsim_login_csrf";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Shortest password `sipsimd user create` accepts.
pub const MIN_PASSWORD_LEN: usize = 10;

/// A random URL-safe token of 256 bits.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(sipsim_core::random::bytes::<32>())
}

/// An argon2id PHC string for `password` (slow by design: call off the async threads).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string (argon2 compares in constant time).
pub fn verify_password(password: &str, stored: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), stored)
        .is_ok()
}

/// A well-formed argon2 hash of a password nobody has, checked when the email is unknown so that a
/// login takes as long for an unknown email as for a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// Two tokens equal, compared in constant time.
pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request reached us over HTTPS (directly behind a TLS-terminating proxy).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value with the dashboard's flags; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/dashboard; HttpOnly; SameSite=Lax; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// Failed logins allowed per email and per client address within [`LoginLimiter::WINDOW`].
const PER_EMAIL: usize = 5;
const PER_ADDRESS: usize = 20;

/// Counts failed logins per email and per client address, and refuses further attempts for a while
/// once either has too many: guessing passwords costs hours, not seconds.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// The window failures are counted in.
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    fn keys(email: &str, address: Option<&str>) -> [(String, usize); 2] {
        [
            (format!("email:{}", email_key(email)), PER_EMAIL),
            (
                format!("addr:{}", address.unwrap_or("unknown")),
                PER_ADDRESS,
            ),
        ]
    }

    /// `Some(wait)` when this email or address must wait before trying again.
    pub fn blocked(&self, email: &str, address: Option<&str>) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(email, address)
            .into_iter()
            .filter_map(|(key, limit)| {
                let times = map.get_mut(&key)?;
                while times.front().is_some_and(|t| now - *t > Self::WINDOW) {
                    times.pop_front();
                }
                (times.len() >= limit)
                    .then(|| times.front().map(|t| Self::WINDOW - (now - *t)))
                    .flatten()
            })
            .max()
    }

    /// Notes a failed attempt.
    pub fn failed(&self, email: &str, address: Option<&str>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Forget keys whose failures are all old, so the map cannot grow without bound.
        if map.len() > 10_000 {
            map.retain(|_, t| t.back().is_some_and(|t| now - *t <= Self::WINDOW));
        }
        for (key, _) in Self::keys(email, address) {
            map.entry(key).or_default().push_back(now);
        }
    }

    /// Forgets an email's failures after a successful login.
    pub fn succeeded(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("email:{}", email_key(email)));
    }
}

/// An email as the limiter counts it: trimmed, lowercased, and no longer than an email can be
/// (254), so that made-up 16 KiB "emails" cannot fill memory.
fn email_key(email: &str) -> String {
    email.trim().to_lowercase().chars().take(254).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_wrong_ones_do_not() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse battery!", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn limiter_blocks_after_five_failures_per_email() {
        let limiter = LoginLimiter::default();
        for _ in 0..PER_EMAIL {
            assert!(limiter.blocked("A@x.com", Some("1.2.3.4")).is_none());
            limiter.failed("a@x.com", Some("1.2.3.4"));
        }
        assert!(limiter.blocked("a@X.com ", Some("5.6.7.8")).is_some());
        assert!(limiter.blocked("b@x.com", Some("1.2.3.4")).is_none());
        limiter.succeeded("a@x.com");
        assert!(limiter.blocked("a@x.com", Some("5.6.7.8")).is_none());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "a=1; sipsim_session=tok; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "c"), None);
        assert!(set_cookie("n", "v", SESSION_TTL, true).ends_with("; Secure"));
    }
}
