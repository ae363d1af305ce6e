//! Secrets: webhook signing secrets, API client secrets and their stored hashes.
//!
//! Secret types never show their value in `Debug` output, so a stray `{:?}` in a log line cannot leak
//! one. Client secrets carry 256 random bits, so a single SHA-256 is a sound way to store them (slow
//! password hashes are for human-chosen passwords); comparison is constant-time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A webhook signing secret, `whsec_<base64 of 32 random bytes>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    /// The prefix every signing secret has.
    pub const PREFIX: &'static str = "whsec_";

    /// A fresh random secret.
    pub fn generate() -> Self {
        SigningSecret(format!("{}{}", Self::PREFIX, STANDARD.encode(crate::random::bytes::<32>())))
    }

    /// Wraps a stored secret. The storage layer is trusted to hand back what it was given.
    pub fn from_stored(value: String) -> Self {
        SigningSecret(value)
    }

    /// The secret's text, for signing and for showing to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(\"whsec_…redacted\")")
    }
}

/// An API client secret as issued: shown once, then only its hash is kept.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// A fresh random secret (`scs_` and 43 base64url characters).
    pub fn generate() -> Self {
        ClientSecret(format!("scs_{}", URL_SAFE_NO_PAD.encode(crate::random::bytes::<32>())))
    }

    /// The secret's text, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash to store.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(redacted)")
    }
}

/// SHA-256 of a client secret, as stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a presented secret.
    pub fn of(secret: &str) -> Self {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Rebuilds a stored hash; `None` if the stored bytes are not 32 long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(SecretHash)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `presented` hashes to this value, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        SecretHash::of(presented).0.ct_eq(&self.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_secret_shape() {
        let s = SigningSecret::generate();
        let body = s.expose().strip_prefix("whsec_").unwrap();
        assert_eq!(STANDARD.decode(body).unwrap().len(), 32);
        assert_ne!(s, SigningSecret::generate());
        assert!(!format!("{s:?}").contains(body));
    }

    #[test]
    fn client_secret_hash_matches_only_itself() {
        let s = ClientSecret::generate();
        let h = s.hash();
        assert!(h.matches(s.expose()));
        assert!(!h.matches(&s.expose()[1..]));
        assert!(!h.matches(""));
        assert_eq!(SecretHash::from_bytes(h.as_bytes()), Some(h));
        assert_eq!(SecretHash::from_bytes(&[0; 31]), None);
        assert!(!format!("{s:?}").contains(s.expose()));
    }
}
