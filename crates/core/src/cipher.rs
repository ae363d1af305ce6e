//! Encryption at rest for secrets the system must be able to read back (webhook signing secrets, the
//! generated JWT key), under the operator's `SIPSIM_ENCRYPTION_KEY`.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per value, so nonces never repeat in practice.
//! Each value is bound to where it is stored (its *context*, e.g. the account id) as associated data,
//! so a ciphertext copied into another row does not decrypt. Stored form:
//! `enc:v1:` + base64(nonce ‖ ciphertext). Values without the prefix are plaintext (written before a
//! key was configured) and are read as they are.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

/// Why a key or a stored value could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The configured key is not base64 of exactly 32 bytes.
    #[error(
        "the encryption key must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)"
    )]
    BadKey,
    /// A stored value is encrypted but no key is configured.
    #[error("a stored secret is encrypted, but SIPSIM_ENCRYPTION_KEY is not set")]
    KeyMissing,
    /// Wrong key, tampered value or a value moved from elsewhere.
    #[error("a stored secret cannot be decrypted with the configured key")]
    Undecryptable,
}

/// The key secrets are sealed with.
#[derive(Clone)]
pub struct SecretCipher(XChaCha20Poly1305);

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher(redacted)")
    }
}

impl SecretCipher {
    /// Builds the cipher from the base64 text of a 32-byte key.
    pub fn from_base64(key: &str) -> Result<Self, CipherError> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| CipherError::BadKey)?;
        if bytes.len() != 32 {
            return Err(CipherError::BadKey);
        }
        XChaCha20Poly1305::new_from_slice(&bytes)
            .map(SecretCipher)
            .map_err(|_| CipherError::BadKey)
    }

    /// Encrypts `plaintext` for storage at `context`.
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let nonce_bytes = crate::random::bytes::<NONCE_LEN>();
        let nonce = XNonce::from(nonce_bytes);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption with a valid key and an in-memory buffer cannot fail.
        let ciphertext = self.0.encrypt(&nonce, payload).unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", STANDARD.encode(blob))
    }

    fn open(&self, sealed: &str, context: &str) -> Result<String, CipherError> {
        let blob = STANDARD
            .decode(sealed)
            .map_err(|_| CipherError::Undecryptable)?;
        if blob.len() < NONCE_LEN {
            return Err(CipherError::Undecryptable);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CipherError::Undecryptable)?;
        let plain = self
            .0
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CipherError::Undecryptable)?;
        String::from_utf8(plain).map_err(|_| CipherError::Undecryptable)
    }
}

/// Prepares a secret for storage: sealed when a cipher is configured, as it is otherwise.
pub fn seal(cipher: Option<&SecretCipher>, plaintext: &str, context: &str) -> String {
    match cipher {
        Some(c) => c.seal(plaintext, context),
        None => plaintext.to_owned(),
    }
}

/// Reads a stored secret back: opens sealed values (which needs the cipher), returns plaintext ones.
pub fn unseal(
    cipher: Option<&SecretCipher>,
    stored: &str,
    context: &str,
) -> Result<String, CipherError> {
    match (stored.strip_prefix(PREFIX), cipher) {
        (None, _) => Ok(stored.to_owned()),
        (Some(_), None) => Err(CipherError::KeyMissing),
        (Some(sealed), Some(c)) => c.open(sealed, context),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretCipher {
        SecretCipher::from_base64(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn round_trip_bound_to_context() {
        let c = key();
        let sealed = seal(Some(&c), "whsec_abc", "acc_1");
        assert!(sealed.starts_with("enc:v1:"));
        assert!(!sealed.contains("whsec_abc"));
        assert_ne!(
            sealed,
            seal(Some(&c), "whsec_abc", "acc_1"),
            "fresh nonce each time"
        );
        assert_eq!(unseal(Some(&c), &sealed, "acc_1").unwrap(), "whsec_abc");
        assert_eq!(
            unseal(Some(&c), &sealed, "acc_2"),
            Err(CipherError::Undecryptable)
        );
        let other = SecretCipher::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert_eq!(
            unseal(Some(&other), &sealed, "acc_1"),
            Err(CipherError::Undecryptable)
        );
        assert_eq!(unseal(None, &sealed, "acc_1"), Err(CipherError::KeyMissing));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(unseal(Some(&c), &tampered, "acc_1").is_err());
    }

    #[test]
    fn plaintext_passes_through_and_bad_keys_are_refused() {
        assert_eq!(unseal(Some(&key()), "whsec_x", "a").unwrap(), "whsec_x");
        assert_eq!(seal(None, "whsec_x", "a"), "whsec_x");
        assert_eq!(
            SecretCipher::from_base64("short").unwrap_err(),
            CipherError::BadKey
        );
        assert_eq!(
            SecretCipher::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err(),
            CipherError::BadKey
        );
    }
}
