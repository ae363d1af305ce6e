//! HS256 JSON Web Tokens for API access, verified in memory with no database read.
//!
//! Written on `hmac` + `sha2` directly rather than a JWT crate: we need one algorithm, and the
//! general crates pull in RSA and elliptic-curve stacks. The header is fixed to
//! `{"alg":"HS256","typ":"JWT"}`; a token whose header names any other algorithm (including `none`) is
//! refused before its signature is looked at, and signatures are compared in constant time.

use crate::{AccountId, ClientId, ScopeSet};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// base64url of `{"alg":"HS256","typ":"JWT"}`: the header every token we issue has.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Longest token we try to parse; ours are about 300 bytes.
const MAX_TOKEN_LEN: usize = 4096;

/// Leeway for clocks of different nodes when checking `iat`.
const CLOCK_SKEW_SECS: i64 = 60;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The API client the token was issued to.
    pub client_id: ClientId,
    /// The account the client acts for.
    pub account_id: AccountId,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Issued at, Unix seconds.
    pub issued_at: i64,
    /// Expires at, Unix seconds.
    pub expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct WireClaims<'a> {
    sub: &'a str,
    acc: &'a str,
    scope: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct WireHeader<'a> {
    alg: &'a str,
}

/// Why a token was refused. Never shown to clients (they get one generic 401); kept for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, bad JSON, or claims of the wrong shape.
    #[error("malformed token")]
    Malformed,
    /// A header naming another algorithm.
    #[error("unsupported algorithm")]
    Algorithm,
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
    /// Past `exp`.
    #[error("expired")]
    Expired,
    /// `iat` in the future.
    #[error("issued in the future")]
    NotYetValid,
}

/// The key tokens are signed and checked with.
#[derive(Clone)]
pub struct JwtKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(redacted)")
    }
}

impl JwtKey {
    /// A key from raw bytes (at least 32 of them, checked by the caller that reads configuration).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        #[allow(clippy::expect_used)]
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        JwtKey { mac }
    }

    /// Signs `claims` into a compact JWT.
    pub fn issue(&self, claims: &AccessClaims) -> String {
        let scope = claims.scopes.to_string();
        let wire = WireClaims {
            sub: claims.client_id.as_str(),
            acc: claims.account_id.as_str(),
            scope: &scope,
            iat: claims.issued_at,
            exp: claims.expires_at,
        };
        // Serialising a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(&wire).unwrap_or_default();
        let mut token = String::with_capacity(400);
        token.push_str(HEADER_B64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        let sig = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut token);
        token
    }

    /// Checks a token's header, signature and times against `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (signed, sig_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header_b64, payload_b64) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if header_b64 != HEADER_B64 {
            let header = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| TokenError::Malformed)?;
            let header: WireHeader<'_> =
                serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
            if header.alg != "HS256" {
                return Err(TokenError::Algorithm);
            }
        }
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;

        let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| TokenError::Malformed)?;
        let wire: WireClaims<'_> =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if now >= wire.exp {
            return Err(TokenError::Expired);
        }
        if wire.iat > now + CLOCK_SKEW_SECS {
            return Err(TokenError::NotYetValid);
        }
        Ok(AccessClaims {
            client_id: ClientId::parse(wire.sub).map_err(|_| TokenError::Malformed)?,
            account_id: AccountId::parse(wire.acc).map_err(|_| TokenError::Malformed)?,
            scopes: ScopeSet::parse_list(wire.scope).map_err(|_| TokenError::Malformed)?,
            issued_at: wire.iat,
            expires_at: wire.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            client_id: ClientId::generate(),
            account_id: AccountId::generate(),
            scopes: ScopeSet::all(),
            issued_at: now,
            expires_at: now + 7200,
        }
    }

    #[test]
    fn round_trip_and_documented_header() {
        let key = JwtKey::new(b"0123456789abcdef0123456789abcdef");
        let c = claims(1_705_312_200);
        let token = key.issue(&c);
        assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
        assert_eq!(key.verify(&token, 1_705_312_201), Ok(c));
    }

    #[test]
    fn refuses_expired_tampered_foreign_and_alg_none() {
        let key = JwtKey::new(b"0123456789abcdef0123456789abcdef");
        let other = JwtKey::new(b"another key, 32 bytes long......");
        let c = claims(1000);
        let token = key.issue(&c);
        assert_eq!(key.verify(&token, 1000 + 7200), Err(TokenError::Expired));
        assert_eq!(key.verify(&token, 1000 - 61), Err(TokenError::NotYetValid));
        assert_eq!(other.verify(&token, 1001), Err(TokenError::Signature));

        // Change one claim and keep the signature: refused.
        let (h, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            format!(
                r#"{{"sub":"{}","acc":"{}","scope":"webhooks.read webhooks.write","iat":1000,"exp":99999999999}}"#,
                c.client_id, c.account_id
            )
            .as_bytes(),
        );
        assert_eq!(key.verify(&format!("{h}.{forged}.{sig}"), 1001), Err(TokenError::Signature));

        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert_eq!(key.verify(&format!("{none}.{forged}."), 1001), Err(TokenError::Algorithm));
        for junk in ["", ".", "..", "a.b.c", "eyJ.eyJ", &"a".repeat(5000)] {
            assert!(key.verify(junk, 1001).is_err(), "{junk:.20}");
        }
    }
}
