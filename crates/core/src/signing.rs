//! Signing and verifying webhook requests, in both schemes a delivery carries.
//!
//! * **SIPSIM's** (`X-Webhook-Signature`, `X-Webhook-Timestamp`): lowercase hex of
//!   HMAC-SHA256(key = the whole signing-secret string as UTF-8, message = `"{timestamp}.{body}"`),
//!   exactly what SIPSIM's published Python and Node verifiers compute.
//! * **Standard Webhooks** (`webhook-id`, `webhook-timestamp`, `webhook-signature`): `v1,` + base64 of
//!   HMAC-SHA256(key = base64-decoded bytes after `whsec_`, message = `"{id}.{timestamp}.{body}"`),
//!   space-separated when several secrets are valid (rotation), so any Standard Webhooks library
//!   verifies our deliveries.
//!
//! Verification compares in constant time. SIPSIM's scheme has no freshness rule (its docs give none);
//! Standard Webhooks verification rejects timestamps more than [`TOLERANCE_SECS`] away, as its
//! libraries do.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far a Standard Webhooks timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is absent or not in the scheme's format.
    #[error("signature headers are missing or malformed")]
    Malformed,
    /// No signature matches.
    #[error("no signature matches")]
    Mismatch,
    /// The timestamp is outside the tolerance.
    #[error("the timestamp is too old or too far in the future")]
    Stale,
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    #[allow(clippy::expect_used)]
    HmacSha256::new_from_slice(key).expect("HMAC accepts any key length")
}

fn sipsim_mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut m = mac(secret.as_bytes());
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `X-Webhook-Signature` value for `body` sent at `timestamp` (Unix seconds): 64 lowercase hex digits.
pub fn sipsim_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = sipsim_mac(secret, &timestamp.to_string(), body).finalize().into_bytes();
    hex_lower(&digest)
}

/// Checks SIPSIM's headers the way its documented verifier does, in constant time.
pub fn verify_sipsim(
    secret: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
) -> Result<(), VerifyError> {
    if timestamp_header.is_empty() || !timestamp_header.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::Malformed);
    }
    let expected = decode_hex(signature_header.trim()).ok_or(VerifyError::Malformed)?;
    sipsim_mac(secret, timestamp_header, body)
        .verify_slice(&expected)
        .map_err(|_| VerifyError::Mismatch)
}

/// The key of `webhook-signature`: the decoded bytes of a `whsec_<base64>` secret (every generated
/// one, and any Standard Webhooks secret), otherwise the secret's own UTF-8 bytes (one a customer
/// brought from SIPSIM, which signs with them), given to Standard Webhooks libraries as
/// [`standard_secret`].
fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `secret` as a Standard Webhooks library takes it, `whsec_<base64 of the key>`: the secret itself
/// when it is in that form already.
pub fn standard_secret(secret: &str) -> String {
    format!("whsec_{}", STANDARD.encode(standard_key(secret)))
}

fn standard_mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut m = mac(key);
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `webhook-signature` value: one `v1,<base64>` per secret, space-separated (the current secret
/// first, then any still valid after a rotation).
pub fn standard_signature(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mut out = String::new();
    for secret in secrets {
        let key = standard_key(secret);
        let digest = standard_mac(&key, id, &ts, body).finalize().into_bytes();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("v1,");
        STANDARD.encode_string(digest, &mut out);
    }
    out
}

/// Checks Standard Webhooks headers against one secret: a fresh timestamp and at least one matching
/// `v1` signature.
pub fn verify_standard(
    secret: &str,
    id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp_header.parse().map_err(|_| VerifyError::Malformed)?;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    let key = standard_key(secret);
    let mut any = false;
    for candidate in signature_header.split(' ').filter(|s| !s.is_empty()) {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        any = true;
        let Ok(sig) = STANDARD.decode(encoded) else {
            continue;
        };
        if standard_mac(&key, id, timestamp_header, body).verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(if any { VerifyError::Mismatch } else { VerifyError::Malformed })
}

fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes().chunks(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's derived test vectors (sipsim-reference.md § Derived test vector).
    const SECRET: &str = "your_signing_secret";
    const TS: i64 = 1_736_937_000;
    const ICS_BODY: &str = r#"{"event":"incoming_call_start","caller":"+33612345678","receiver":"+33198765432","time":"2025-01-15T10:30:00Z","pbx_id":"call_abc123"}"#;
    const TEST_BODY: &str = r#"{"event":"test","message":"This is a test webhook from SIPSIM. If you receive this, your endpoint is configured correctly.","timestamp":"2025-01-15T10:30:00Z","pbx_id":"test_000000"}"#;

    #[test]
    fn sipsim_reference_vectors() {
        assert_eq!(
            sipsim_signature(SECRET, TS, ICS_BODY.as_bytes()),
            "b60292fd3dd4f002abf403a8c9441fe727ca5607b4f81b6df646900d70b931d0"
        );
        assert_eq!(
            sipsim_signature(SECRET, TS, TEST_BODY.as_bytes()),
            "7a032801e3566ac344faa915bd29eab7ac5dd21fc4c9bb0163a489f8fe3bb6f0"
        );
    }

    #[test]
    fn sipsim_verification() {
        let sig = sipsim_signature(SECRET, TS, ICS_BODY.as_bytes());
        assert_eq!(verify_sipsim(SECRET, "1736937000", &sig, ICS_BODY.as_bytes()), Ok(()));
        assert_eq!(
            verify_sipsim(SECRET, "1736937000", &sig.to_uppercase(), ICS_BODY.as_bytes()),
            Ok(())
        );
        assert_eq!(
            verify_sipsim(SECRET, "1736937001", &sig, ICS_BODY.as_bytes()),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_sipsim("other", "1736937000", &sig, ICS_BODY.as_bytes()),
            Err(VerifyError::Mismatch)
        );
        let mut body = ICS_BODY.as_bytes().to_vec();
        body.push(b' ');
        assert_eq!(verify_sipsim(SECRET, "1736937000", &sig, &body), Err(VerifyError::Mismatch));
        for bad in ["", "sha256=abc", &sig[..63], &format!("{sig}0")] {
            assert_eq!(
                verify_sipsim(SECRET, "1736937000", bad, ICS_BODY.as_bytes()),
                Err(VerifyError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify_sipsim(SECRET, "-1", &sig, ICS_BODY.as_bytes()),
            Err(VerifyError::Malformed)
        );
    }

    /// The Standard Webhooks specification's published example.
    #[test]
    fn standard_webhooks_published_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig =
            standard_signature(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(
            verify_standard(
                secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &sig,
                body,
                1_614_265_330
            ),
            Ok(())
        );
    }

    #[test]
    fn standard_webhooks_rotation_staleness_and_tampering() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let body = b"{}";
        let sig = standard_signature(&[new, old], "msg_1", 1000, body);
        assert_eq!(sig.split(' ').count(), 2);
        assert_eq!(verify_standard(old, "msg_1", "1000", &sig, body, 1000), Ok(()));
        assert_eq!(verify_standard(new, "msg_1", "1000", &sig, body, 1000), Ok(()));
        assert_eq!(
            verify_standard(new, "msg_2", "1000", &sig, body, 1000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_standard(new, "msg_1", "1000", &sig, body, 1000 + TOLERANCE_SECS + 1),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify_standard(new, "msg_1", "1000", "v2,abc", body, 1000),
            Err(VerifyError::Malformed)
        );
    }

    /// A secret brought from SIPSIM (any printable text) signs `webhook-signature` with its UTF-8
    /// bytes, and a Standard Webhooks library given its `whsec_` form verifies it.
    #[test]
    fn a_brought_secret_signs_with_its_bytes_in_both_schemes() {
        let body = br#"{"event":"sms"}"#;
        let brought = "my-sipsim-secret: 16+ bytes";
        let standard = standard_secret(brought);
        assert_eq!(standard, format!("whsec_{}", STANDARD.encode(brought)));
        let sig = standard_signature(&[brought], "msg_1", 1000, body);
        assert_eq!(verify_standard(&standard, "msg_1", "1000", &sig, body, 1000), Ok(()));
        assert_eq!(verify_standard(brought, "msg_1", "1000", &sig, body, 1000), Ok(()));
        // A generated secret and a whsec_ one that is not base64 keep their own forms apart.
        let generated = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert_eq!(standard_secret(generated), generated);
        assert_eq!(
            standard_secret("whsec_!!not base64!!"),
            format!("whsec_{}", STANDARD.encode("whsec_!!not base64!!"))
        );
        let odd = standard_signature(&["whsec_!!not base64!!"], "m", 1, body);
        let again = standard_signature(&[&standard_secret("whsec_!!not base64!!")], "m", 1, body);
        assert_eq!(odd, again);
    }
}
