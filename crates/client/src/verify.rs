//! Verifying a delivery in a receiver.
//!
//! Every delivery carries two signatures of the same body:
//!
//! * SIPSIM's `X-Webhook-Signature`: lowercase hex HMAC-SHA256 of `"{X-Webhook-Timestamp}.{body}"`,
//!   keyed with the whole signing secret as text — what SIPSIM's published verifiers check;
//! * Standard Webhooks' `webhook-signature` (with `webhook-id` and `webhook-timestamp`), which any
//!   Standard Webhooks library checks, and which carries the previous secret's signature too for
//!   24 hours after the secret is regenerated.
//!
//! [`Verifier`] checks both (the second when present), against the current secret and, during a
//! rotation, the previous one; it rejects timestamps more than five minutes from now, so a captured
//! request cannot be replayed later. Comparisons are constant-time. Always verify the raw body bytes,
//! before parsing: re-serialised JSON does not verify.
//!
//! ```
//! use sipsim_client::verify::Verifier;
//! use sipsim_client::payload::Payload;
//! use sipsim_client::Event;
//!
//! # let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! # let body = br#"{"id":789,"summary":"Pricing requested.","call_id":12345}"#;
//! # let now = 1_736_937_000;
//! # let signature = sipsim_client::verify::sipsim_signature(secret, now, body);
//! # let (timestamp, event) = (now.to_string(), "summary");
//! // In your handler: the headers as received, and the raw body.
//! let headers = [
//!     ("X-Webhook-Signature", signature.as_str()),
//!     ("X-Webhook-Timestamp", timestamp.as_str()),
//!     ("X-Webhook-Event", event),
//! ];
//! let verified = Verifier::new(secret).verify_at(&headers[..], body, now)?;
//! let event = Event::from_name(verified.event.as_deref().unwrap_or_default()).unwrap();
//! match Payload::parse(event, body)? {
//!     Payload::Summary(s) => assert_eq!(s.call_id, 12345),
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use sipsim_core::signing::{
    TOLERANCE_SECS, VerifyError, sipsim_signature, standard_signature, verify_sipsim,
    verify_standard,
};

/// Where a verifier reads headers from: implemented for `http::HeaderMap` (axum, hyper, reqwest)
/// and for slices of name/value pairs. Names are matched case-insensitively.
pub trait Headers {
    /// The first value of `name`, if present and text.
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

impl Headers for [(String, String)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Which signatures a request carried and passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `X-Webhook-Id` (or `webhook-id`): the message id, the same on every retry — deduplicate on it.
    pub id: Option<String>,
    /// `X-Webhook-Event`: the event name (`speech` and `summary` bodies do not carry it).
    pub event: Option<String>,
    /// `X-Webhook-Timestamp`, Unix seconds.
    pub timestamp: i64,
    /// Whether a `webhook-signature` was present and verified too.
    pub standard: bool,
}

/// Checks deliveries against a signing secret (and, during a rotation, the previous one).
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<String>,
    tolerance: Option<i64>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl Verifier {
    /// A verifier for the integration's signing secret (`whsec_…`).
    pub fn new(secret: &str) -> Self {
        Verifier { secrets: vec![secret.to_owned()], tolerance: Some(TOLERANCE_SECS) }
    }

    /// Also accept signatures made with `secret`: give the old secret for the 24 hours after
    /// regenerating it, until every receiver has the new one.
    pub fn also_accept(mut self, secret: &str) -> Self {
        self.secrets.push(secret.to_owned());
        self
    }

    /// How far the timestamp may be from now (default five minutes); `None` checks no time, as
    /// SIPSIM's own examples do not.
    pub fn tolerance_secs(mut self, tolerance: Option<i64>) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Verifies a request now.
    pub fn verify<H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.verify_at(headers, body, now)
    }

    /// Verifies a request as if it were `now` (Unix seconds).
    pub fn verify_at<H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let timestamp_header =
            headers.header("x-webhook-timestamp").ok_or(VerifyError::Malformed)?;
        let signature = headers.header("x-webhook-signature").ok_or(VerifyError::Malformed)?;
        let timestamp: i64 = timestamp_header.trim().parse().map_err(|_| VerifyError::Malformed)?;
        if let Some(tolerance) = self.tolerance
            && (now - timestamp).abs() > tolerance
        {
            return Err(VerifyError::Stale);
        }
        self.first_match(|secret| verify_sipsim(secret, timestamp_header, signature, body))?;

        let id = headers
            .header("x-webhook-id")
            .or_else(|| headers.header("webhook-id"))
            .map(str::to_owned);
        let standard = match headers.header("webhook-signature") {
            None => false,
            Some(signature) => {
                let id = headers.header("webhook-id").ok_or(VerifyError::Malformed)?;
                let ts = headers.header("webhook-timestamp").ok_or(VerifyError::Malformed)?;
                // The freshness rule was applied above; Standard Webhooks' own check gets `now` as
                // its timestamp when no tolerance is wanted.
                let at = if self.tolerance.is_some() {
                    now
                } else {
                    ts.parse().map_err(|_| VerifyError::Malformed)?
                };
                self.first_match(|secret| verify_standard(secret, id, ts, signature, body, at))?;
                true
            }
        };
        Ok(Verified {
            id,
            event: headers.header("x-webhook-event").map(str::to_owned),
            timestamp,
            standard,
        })
    }

    /// Ok if any secret verifies; otherwise the first secret's error.
    fn first_match(
        &self,
        check: impl Fn(&str) -> Result<(), VerifyError>,
    ) -> Result<(), VerifyError> {
        let mut first = None;
        for secret in &self.secrets {
            match check(secret) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or(VerifyError::Mismatch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const NOW: i64 = 1_736_937_000;
    const BODY: &[u8] = br#"{"event":"sms"}"#;

    fn headers(secret: &str, standard_secrets: &[&str], ts: i64) -> Vec<(String, String)> {
        let mut h = vec![
            ("X-Webhook-Id".to_owned(), "msg_1".to_owned()),
            ("X-Webhook-Event".to_owned(), "sms".to_owned()),
            ("X-Webhook-Timestamp".to_owned(), ts.to_string()),
            ("X-Webhook-Signature".to_owned(), sipsim_signature(secret, ts, BODY)),
        ];
        if !standard_secrets.is_empty() {
            h.extend([
                ("webhook-id".to_owned(), "msg_1".to_owned()),
                ("webhook-timestamp".to_owned(), ts.to_string()),
                (
                    "webhook-signature".to_owned(),
                    standard_signature(standard_secrets, "msg_1", ts, BODY),
                ),
            ]);
        }
        h
    }

    #[test]
    fn verifies_both_schemes() {
        let h = headers(SECRET, &[SECRET], NOW);
        let v = Verifier::new(SECRET).verify_at(&h[..], BODY, NOW).unwrap();
        assert_eq!(
            v,
            Verified {
                id: Some("msg_1".into()),
                event: Some("sms".into()),
                timestamp: NOW,
                standard: true
            }
        );
        let sipsim_only = headers(SECRET, &[], NOW);
        assert!(!Verifier::new(SECRET).verify_at(&sipsim_only[..], BODY, NOW).unwrap().standard);
    }

    #[test]
    fn rejects_tampering_wrong_secrets_and_stale_requests() {
        let h = headers(SECRET, &[SECRET], NOW);
        let v = Verifier::new(SECRET);
        assert_eq!(v.verify_at(&h[..], br#"{"event":"sms "}"#, NOW), Err(VerifyError::Mismatch));
        assert_eq!(Verifier::new(OLD).verify_at(&h[..], BODY, NOW), Err(VerifyError::Mismatch));
        assert_eq!(v.verify_at(&h[..], BODY, NOW + TOLERANCE_SECS + 1), Err(VerifyError::Stale));
        assert!(v.clone().tolerance_secs(None).verify_at(&h[..], BODY, NOW + 86_400).is_ok());
        let none: [(&str, &str); 0] = [];
        assert_eq!(v.verify_at(&none[..], BODY, NOW), Err(VerifyError::Malformed));
        // A valid SIPSIM signature with a forged Standard Webhooks one is refused.
        let mut forged = headers(SECRET, &[OLD], NOW);
        forged.retain(|(n, _)| n != "X-Webhook-Signature");
        forged.push(("X-Webhook-Signature".into(), sipsim_signature(SECRET, NOW, BODY)));
        assert_eq!(v.verify_at(&forged[..], BODY, NOW), Err(VerifyError::Mismatch));
    }

    #[test]
    fn the_previous_secret_is_accepted_when_asked() {
        // After a rotation the sender signs X-Webhook-Signature with the new secret only.
        let h = headers(SECRET, &[SECRET, OLD], NOW);
        assert!(Verifier::new(OLD).verify_at(&h[..], BODY, NOW).is_err());
        assert!(Verifier::new(OLD).also_accept(SECRET).verify_at(&h[..], BODY, NOW).is_ok());
    }

    #[test]
    fn header_map_lookup_ignores_case() {
        let mut map = http::HeaderMap::new();
        for (n, v) in headers(SECRET, &[SECRET], NOW) {
            map.insert(
                http::HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        assert!(Verifier::new(SECRET).verify_at(&map, BODY, NOW).is_ok());
    }
}
