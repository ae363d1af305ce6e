//! Dashboard authentication: argon2 passwords (checked a few at a time), session cookies and CSRF
//! tokens. Failed logins are limited by `limits::failures`.
//!
//! A session is a random 256-bit token in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` when the
//! request came over HTTPS); the database keeps only its SHA-256, with the session's CSRF token and
//! its end (12 h after login). Every form carries the CSRF token and every POST compares it in
//! constant time. The login form, before there is a session, uses a double-submit token: a cookie
//! and a hidden field that must match.

use std::time::Duration;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

pub(crate) use crate::service::users::{hash_password, random_token};

/// The session cookie.
pub const SESSION_COOKIE: &str = "sipsim_session";
/// The login form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "sipsim_login_csrf";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
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

/// How long a login waits for a free password check before it is answered `503`.
const CHECK_QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Password checks at once (argon2 uses one core each; logins are not a throughput path).
const CHECKS_AT_ONCE: usize = 2;

/// The password checks running at once, each with working memory that is allocated once and kept.
///
/// Each argon2 check needs 19 MiB. Unbounded, a few hundred concurrent logins took the process to
/// gigabytes, and the dispatcher lives in the same process. Bounding them was not enough: with a
/// fresh 19 MiB allocation per check, glibc's allocator raised its mmap threshold after the first
/// free and then kept the freed memory fragmented in its heaps — 20 checks one after another left
/// 235 MB resident (measured). So each slot owns its memory and reuses it: resident memory for
/// password checks is at most `CHECKS_AT_ONCE` × 19 MiB, however many logins arrive. Beyond the
/// slots, logins wait briefly, then are told to come back (`503`).
pub struct PasswordChecks {
    slots: tokio::sync::Semaphore,
    memory: std::sync::Mutex<Vec<Vec<argon2::Block>>>,
}

impl Default for PasswordChecks {
    fn default() -> Self {
        PasswordChecks::with_slots(CHECKS_AT_ONCE)
    }
}

/// No password check could start in time: the server is busy checking others.
#[derive(Debug)]
pub struct ChecksBusy;

impl PasswordChecks {
    fn with_slots(slots: usize) -> Self {
        PasswordChecks {
            slots: tokio::sync::Semaphore::new(slots),
            memory: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Whether `password` matches `stored` — or, with no user (`None`), checks it against a decoy
    /// hash and answers `false`, so an unknown email takes as long as a wrong password.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, ChecksBusy> {
        let permit = tokio::time::timeout(CHECK_QUEUE_WAIT, self.slots.acquire())
            .await
            .map_err(|_| ChecksBusy)?
            .map_err(|_| ChecksBusy)?;
        let lock = || self.memory.lock().unwrap_or_else(|e| e.into_inner());
        // A slot's memory: there are never more buffers than slots.
        let mut memory = lock().pop().unwrap_or_default();
        let checked = tokio::task::spawn_blocking(move || {
            let verified = match stored {
                Some(stored) => verify_in(&password, &stored, &mut memory),
                None => {
                    verify_in(&password, decoy_hash(), &mut memory);
                    false
                }
            };
            (verified, memory)
        })
        .await;
        let verified = match checked {
            Ok((verified, memory)) => {
                lock().push(memory);
                verified
            }
            Err(_) => false,
        };
        drop(permit);
        Ok(verified)
    }
}

/// Whether `password` matches the stored PHC string, compared in constant time, with working
/// memory the caller keeps: `memory` grows to what the stored
/// hash's parameters need (our hashes: argon2's defaults) and is reused by the next check.
fn verify_in(password: &str, stored: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(hash) = argon2::PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    // A stored hash is ours; one asking for far more memory than ours was tampered with.
    if params.m_cost() > 4 * argon2::Params::DEFAULT_M_COST {
        return false;
    }
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::new());
    }
    let mut computed = vec![0u8; expected.len()];
    argon2::Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut computed,
            &mut memory[..blocks],
        )
        .is_ok()
        && bool::from(computed.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_wrong_ones_do_not() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let mut memory = Vec::new();
        assert!(verify_in("correct horse battery", &hash, &mut memory));
        assert_eq!(memory.len(), argon2::Params::DEFAULT_M_COST as usize);
        assert!(!verify_in("correct horse battery!", &hash, &mut memory));
        assert!(!verify_in("x", "not a hash", &mut memory));
        let other = hash_password("another password").unwrap();
        assert!(verify_in("another password", &other, &mut memory));
        assert!(!verify_in("correct horse battery", &other, &mut memory));
    }

    #[tokio::test]
    async fn password_checks_are_bounded_and_unknown_users_cost_a_hash() {
        let hash = hash_password("correct horse battery").unwrap();
        let checks = PasswordChecks::with_slots(1);
        assert!(checks.verify("correct horse battery".into(), Some(hash.clone())).await.unwrap());
        assert!(!checks.verify("correct horse battery".into(), None).await.unwrap());
        // With the only slot held past the queue's wait, a login is told to come back.
        let held = checks.slots.acquire().await.unwrap();
        assert!(checks.verify("x".into(), Some(hash)).await.is_err());
        drop(held);
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
