//! Encryption at rest for secrets the system must be able to read back (webhook signing secrets, the
//! generated JWT key), under the operator's `SIPSIM_ENCRYPTION_KEY`.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per value, so nonces never repeat in practice.
//! Each value is bound to where it is stored (its *context*, e.g. the account id) as associated data,
//! so a ciphertext copied into another row does not decrypt. Stored form:
//! `enc:v1:` + base64(nonce ‖ ciphertext). Values without the prefix are plaintext (written before a
//! key was configured) and are read as they are, until a server started with a key encrypts them.
//!
//! A configured key may be a *key ring* — `NEW,OLD` — for rotating keys while nodes run: values are
//! sealed with the first key and opened with whichever key opens them. [`plan`] decides, without
//! I/O, what to re-encrypt; [`check_key`] whether a key opens what a database holds.

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

/// The key secrets are sealed with, and any older keys they may still be sealed with.
#[derive(Clone)]
pub struct SecretCipher(Vec<XChaCha20Poly1305>);

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher(redacted)")
    }
}

impl SecretCipher {
    /// Builds the cipher from the base64 text of a 32-byte key, or of several separated by commas
    /// (a key ring: the first seals, any opens).
    pub fn from_base64(keys: &str) -> Result<Self, CipherError> {
        let ring = keys
            .split(',')
            .map(|key| {
                let bytes = STANDARD.decode(key.trim()).map_err(|_| CipherError::BadKey)?;
                if bytes.len() != 32 {
                    return Err(CipherError::BadKey);
                }
                XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| CipherError::BadKey)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SecretCipher(ring))
    }

    /// How many keys the ring holds.
    pub fn keys(&self) -> usize {
        self.0.len()
    }

    /// Encrypts `plaintext` for storage at `context`.
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let nonce_bytes = crate::random::bytes::<NONCE_LEN>();
        let nonce = XNonce::from(nonce_bytes);
        let payload = Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() };
        // The ring is never empty (every key string splits into at least one part); encryption with
        // a valid key and an in-memory buffer cannot fail.
        let ciphertext = self.0[0].encrypt(&nonce, payload).unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce_bytes);
        blob.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", STANDARD.encode(blob))
    }

    fn open(&self, sealed: &str, context: &str) -> Result<String, CipherError> {
        let blob = STANDARD.decode(sealed).map_err(|_| CipherError::Undecryptable)?;
        if blob.len() < NONCE_LEN {
            return Err(CipherError::Undecryptable);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CipherError::Undecryptable)?;
        let plain = self
            .0
            .iter()
            .find_map(|key| {
                key.decrypt(
                    &XNonce::from(nonce),
                    Payload { msg: ciphertext, aad: context.as_bytes() },
                )
                .ok()
            })
            .ok_or(CipherError::Undecryptable)?;
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

/// Whether a stored value is sealed (rather than plaintext).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
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

/// The settings key of the canary: a known value sealed with the key, written the first time a
/// server starts with one, so a wrong key is found at start even in a database with no other secret.
pub const CANARY_SETTING: &str = "encryption_canary";
/// What the canary seals.
const CANARY_TEXT: &str = "sipsim-webhooks encryption canary";
/// The settings key under which a generated JWT key is shared by every node of one database.
pub const JWT_KEY_SETTING: &str = "jwt_hs256_key";
/// Settings that hold secrets (sealed when a key is configured).
pub const SECRET_SETTINGS: [&str; 2] = [JWT_KEY_SETTING, CANARY_SETTING];

/// A freshly sealed canary, for [`CANARY_SETTING`].
pub fn canary(cipher: &SecretCipher) -> String {
    cipher.seal(CANARY_TEXT, CANARY_SETTING)
}

/// Where a secret is stored; its [`SecretSlot::context`] is bound into its ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretSlot {
    /// An integration's signing secret, by account.
    SigningSecret(crate::AccountId),
    /// The signing secret an integration had before the last rotation.
    PreviousSigningSecret(crate::AccountId),
    /// A node-shared setting ([`SECRET_SETTINGS`]).
    Setting(String),
}

impl SecretSlot {
    /// The associated data a value in this slot is sealed with.
    pub fn context(&self) -> String {
        match self {
            // The current and the previous signing secret share a context: rotation moves a value
            // from one column to the other unchanged.
            SecretSlot::SigningSecret(account) | SecretSlot::PreviousSigningSecret(account) => {
                format!("integrations.signing_secret:{account}")
            }
            SecretSlot::Setting(key) => key.clone(),
        }
    }
}

/// A secret as the database holds it (sealed or plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// Where.
    pub slot: SecretSlot,
    /// Its stored form.
    pub stored: String,
}

/// A stored secret to be replaced: what it was when read (the write happens only if it still is)
/// and what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRewrite {
    /// The secret as read.
    pub was: StoredSecret,
    /// Its new stored form.
    pub now: String,
}

/// Why a key cannot be used with what a database holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// Sealed secrets exist and no key is configured.
    #[error(
        "this database holds {sealed} encrypted secret(s), but SIPSIM_ENCRYPTION_KEY is not set: \
         set the key they were encrypted with"
    )]
    Missing {
        /// How many.
        sealed: usize,
    },
    /// The key opens none, or not all, of the sealed secrets.
    #[error(
        "SIPSIM_ENCRYPTION_KEY does not decrypt {unreadable} of the {sealed} encrypted secret(s) in \
         this database: it is not the key they were encrypted with (while rotating keys, give both: \
         SIPSIM_ENCRYPTION_KEY=NEW,OLD)"
    )]
    Wrong {
        /// Secrets the key does not open.
        unreadable: usize,
        /// Sealed secrets in all.
        sealed: usize,
    },
}

/// Whether `cipher` (or no key) can read every secret in `secrets`.
pub fn check_key(
    secrets: &[StoredSecret],
    cipher: Option<&SecretCipher>,
) -> Result<(), KeyProblem> {
    let sealed: Vec<&StoredSecret> = secrets.iter().filter(|s| is_sealed(&s.stored)).collect();
    if sealed.is_empty() {
        return Ok(());
    }
    let Some(cipher) = cipher else {
        return Err(KeyProblem::Missing { sealed: sealed.len() });
    };
    let unreadable = sealed
        .iter()
        .filter(|s| unseal(Some(cipher), &s.stored, &s.slot.context()).is_err())
        .count();
    match unreadable {
        0 => Ok(()),
        unreadable => Err(KeyProblem::Wrong { unreadable, sealed: sealed.len() }),
    }
}

/// What to rewrite so that every secret in `secrets` is sealed with `to`'s first key: plaintext
/// ones, and — when `reseal_all` (a key rotation) — sealed ones too, opened with `from`. Secrets
/// already in the wanted form are left out.
pub fn plan(
    secrets: &[StoredSecret],
    from: Option<&SecretCipher>,
    to: &SecretCipher,
    reseal_all: bool,
) -> Result<Vec<SecretRewrite>, KeyProblem> {
    if reseal_all {
        check_key(secrets, from)?;
    }
    let mut rewrites = Vec::new();
    for secret in secrets {
        if is_sealed(&secret.stored) && !reseal_all {
            continue;
        }
        let context = secret.slot.context();
        // check_key (or plaintext) guarantees this opens.
        let plain = unseal(from, &secret.stored, &context)
            .map_err(|_| KeyProblem::Wrong { unreadable: 1, sealed: 1 })?;
        rewrites.push(SecretRewrite { was: secret.clone(), now: to.seal(&plain, &context) });
    }
    Ok(rewrites)
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
        assert_ne!(sealed, seal(Some(&c), "whsec_abc", "acc_1"), "fresh nonce each time");
        assert_eq!(unseal(Some(&c), &sealed, "acc_1").unwrap(), "whsec_abc");
        assert_eq!(unseal(Some(&c), &sealed, "acc_2"), Err(CipherError::Undecryptable));
        let other = SecretCipher::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert_eq!(unseal(Some(&other), &sealed, "acc_1"), Err(CipherError::Undecryptable));
        assert_eq!(unseal(None, &sealed, "acc_1"), Err(CipherError::KeyMissing));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(unseal(Some(&c), &tampered, "acc_1").is_err());
    }

    #[test]
    fn a_key_ring_seals_with_the_first_and_opens_with_any() {
        let (old, new) = (STANDARD.encode([7u8; 32]), STANDARD.encode([8u8; 32]));
        let sealed_old = seal(Some(&key()), "whsec_a", "c");
        let ring = SecretCipher::from_base64(&format!("{new}, {old}")).unwrap();
        assert_eq!(ring.keys(), 2);
        assert_eq!(unseal(Some(&ring), &sealed_old, "c").unwrap(), "whsec_a");
        let sealed_new = ring.seal("whsec_b", "c");
        let only_new = SecretCipher::from_base64(&new).unwrap();
        assert_eq!(unseal(Some(&only_new), &sealed_new, "c").unwrap(), "whsec_b");
        assert_eq!(unseal(Some(&key()), &sealed_new, "c"), Err(CipherError::Undecryptable));
        assert!(SecretCipher::from_base64(&format!("{new},short")).is_err());
    }

    #[test]
    fn keys_are_checked_against_what_is_stored_and_rewrites_planned() {
        let account = crate::AccountId::generate();
        let old = key();
        let new = SecretCipher::from_base64(&STANDARD.encode([9u8; 32])).unwrap();
        let slot = SecretSlot::SigningSecret(account.clone());
        let plain = StoredSecret {
            slot: SecretSlot::PreviousSigningSecret(account.clone()),
            stored: "whsec_plain".into(),
        };
        let sealed = StoredSecret { stored: old.seal("whsec_sealed", &slot.context()), slot };
        let canary_row =
            StoredSecret { slot: SecretSlot::Setting(CANARY_SETTING.into()), stored: canary(&old) };
        let all = vec![plain.clone(), sealed.clone(), canary_row];
        // Plaintext alone needs no key; sealed secrets need the right one.
        assert_eq!(check_key(std::slice::from_ref(&plain), None), Ok(()));
        assert_eq!(check_key(&all, None), Err(KeyProblem::Missing { sealed: 2 }));
        assert_eq!(
            check_key(&all, Some(&new)),
            Err(KeyProblem::Wrong { unreadable: 2, sealed: 2 })
        );
        assert_eq!(check_key(&all, Some(&old)), Ok(()));
        // Encrypting what is in clear touches the plaintext only.
        let rewrites = plan(&all, Some(&old), &old, false).unwrap();
        assert_eq!(rewrites.len(), 1);
        assert_eq!(rewrites[0].was, plain);
        assert_eq!(
            unseal(Some(&old), &rewrites[0].now, &plain.slot.context()).unwrap(),
            "whsec_plain"
        );
        // A rotation reseals everything under the new key, and needs the old one to read it.
        assert!(plan(&all, Some(&new), &new, true).is_err());
        let rotated = plan(&all, Some(&old), &new, true).unwrap();
        assert_eq!(rotated.len(), 3);
        let after: Vec<StoredSecret> = rotated
            .iter()
            .map(|r| StoredSecret { slot: r.was.slot.clone(), stored: r.now.clone() })
            .collect();
        assert_eq!(check_key(&after, Some(&new)), Ok(()));
        assert!(check_key(&after, Some(&old)).is_err());
        assert_eq!(
            unseal(Some(&new), &after[1].stored, &sealed.slot.context()).unwrap(),
            "whsec_sealed"
        );
    }

    #[test]
    fn plaintext_passes_through_and_bad_keys_are_refused() {
        assert_eq!(unseal(Some(&key()), "whsec_x", "a").unwrap(), "whsec_x");
        assert_eq!(seal(None, "whsec_x", "a"), "whsec_x");
        assert_eq!(SecretCipher::from_base64("short").unwrap_err(), CipherError::BadKey);
        assert_eq!(
            SecretCipher::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err(),
            CipherError::BadKey
        );
    }
}
