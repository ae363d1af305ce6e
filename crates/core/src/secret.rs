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

    /// The fewest bytes a secret the customer brings may have.
    pub const MIN_BROUGHT_BYTES: usize = 16;
    /// The most.
    pub const MAX_BROUGHT_BYTES: usize = 1024;

    /// A secret the customer already has, a SIPSIM one say, so that the receivers that check
    /// `X-Webhook-Signature` with it keep working: signed with as its UTF-8 bytes, as SIPSIM does.
    /// It must be printable (no control characters), 16 to 1024 bytes, and not start or end with
    /// a space (a copy that lost one would never verify).
    pub fn brought(text: &str) -> Result<Self, BroughtSecretError> {
        if text.len() < Self::MIN_BROUGHT_BYTES {
            return Err(BroughtSecretError::TooShort);
        }
        if text.len() > Self::MAX_BROUGHT_BYTES {
            return Err(BroughtSecretError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(BroughtSecretError::NotPrintable);
        }
        if text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace) {
            return Err(BroughtSecretError::EdgeSpace);
        }
        Ok(SigningSecret(text.to_owned()))
    }

    /// The secret's text, for signing and for showing to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret as a Standard Webhooks library takes it: itself when it is `whsec_<base64>` (every
    /// generated one), otherwise `whsec_` + the base64 of its UTF-8 bytes, which are then the key
    /// of `webhook-signature` as they are of `X-Webhook-Signature`.
    pub fn for_standard_webhooks(&self) -> String {
        crate::signing::standard_secret(&self.0)
    }

    /// [`Self::for_standard_webhooks`] when that is not the secret itself (a brought secret), for
    /// showing beside it.
    pub fn other_standard_form(&self) -> Option<String> {
        Some(self.for_standard_webhooks()).filter(|standard| *standard != self.0)
    }
}

/// Why a signing secret the customer brings is refused; displays as the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BroughtSecretError {
    /// Fewer than 16 bytes.
    #[error("a signing secret has at least 16 bytes")]
    TooShort,
    /// More than 1024 bytes.
    #[error("a signing secret has at most 1024 bytes")]
    TooLong,
    /// A control character (a tab, a second line…).
    #[error("a signing secret is printable text on one line (no tabs or control characters)")]
    NotPrintable,
    /// A space at either end.
    #[error("a signing secret does not start or end with a space")]
    EdgeSpace,
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

    #[test]
    fn a_brought_secret_is_kept_as_given_when_it_can_be_copied_back() {
        for good in
            ["0123456789abcdef", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "pass phrase of émigré"]
        {
            assert_eq!(
                SigningSecret::brought(good).map(|s| s.expose().to_owned()),
                Ok(good.to_owned())
            );
        }
        assert_eq!(SigningSecret::brought("0123456789abcde"), Err(BroughtSecretError::TooShort));
        assert_eq!(SigningSecret::brought(&"x".repeat(1025)), Err(BroughtSecretError::TooLong));
        for bad in ["0123456789\tabcdef", "0123456789abcdef\n", "0123456789\u{7f}abcdef"] {
            assert_eq!(
                SigningSecret::brought(bad),
                Err(BroughtSecretError::NotPrintable),
                "{bad:?}"
            );
        }
        for bad in [" 0123456789abcdef", "0123456789abcdef "] {
            assert_eq!(SigningSecret::brought(bad), Err(BroughtSecretError::EdgeSpace));
        }
    }
}
