//! Dashboard users: passwords hashed with argon2id (off the async threads), random tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sipsim_core::store::User;
use sipsim_core::{AccountId, StoreError};

use super::Service;

/// Shortest password a user may be given.
pub const MIN_PASSWORD_LEN: usize = 10;

/// A random URL-safe token of 256 bits (session tokens, CSRF tokens, generated passwords).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(sipsim_core::random::bytes::<32>())
}

/// An argon2id PHC string for `password` (slow by design: call off the async threads).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::{Argon2, PasswordHasher};
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    Ok(hash.to_string())
}

/// Why a user was not created.
#[derive(Debug, thiserror::Error)]
pub enum UserRefused {
    /// Shorter than [`MIN_PASSWORD_LEN`].
    #[error("the password must be at least {MIN_PASSWORD_LEN} characters long")]
    PasswordTooShort,
    /// Not an email address.
    #[error("'{0}' is not an email address")]
    NotAnEmail(String),
    /// The password could not be hashed.
    #[error("{0}")]
    Hash(String),
    /// The store refused (the email is taken, the account does not exist) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Service<'_> {
    /// Creates a dashboard user of `account` who logs in with `email` and `password`.
    pub async fn create_user(
        &self,
        account: &AccountId,
        email: &str,
        password: String,
    ) -> Result<User, UserRefused> {
        let email = email.trim();
        if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace) {
            return Err(UserRefused::NotAnEmail(email.to_owned()));
        }
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(UserRefused::PasswordTooShort);
        }
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| UserRefused::Hash(e.to_string()))?
            .map_err(|e| UserRefused::Hash(e.to_string()))?;
        Ok(self.store.create_user(account, email, &hash).await?)
    }
}
