//! `sipsim-client`: the customer side of SIPSIM's webhooks.
//!
//! * [`Client`]: an async client of the public API — `POST /oauth/token` (the token is cached and
//!   renewed before it expires) and every `/api/v2` webhook route — with errors typed from the API's
//!   envelope ([`ApiError`]).
//! * [`verify`]: checking a delivery's signatures in a receiver, in both schemes a delivery carries
//!   (SIPSIM's `X-Webhook-Signature` and Standard Webhooks' `webhook-signature`).
//! * The typed payload of every event ([`payload`]), to parse what a receiver got.
//!
//! ```no_run
//! # async fn run() -> Result<(), sipsim_client::Error> {
//! use sipsim_client::Client;
//!
//! let client = Client::builder("https://app.sipsim.com")
//!     .credentials("YOUR_CLIENT_ID", "YOUR_CLIENT_SECRET")
//!     .build()?;
//! // The contract's bulk-enable example.
//! for event in client.available_events().await? {
//!     client.enable_event(&event).await?;
//!     println!("Enabled: {event}");
//! }
//! println!("All events enabled.");
//! # Ok(()) }
//! ```

mod client;
mod error;
mod types;
pub mod verify;

pub use client::{Client, ClientBuilder, DeliveryQuery};
pub use error::{ApiError, ApiErrorKind, Error};
pub use sipsim_core::event::{Event, EventGroup};
pub use sipsim_core::payload;
pub use types::{Delivery, DeliveryPage, Pagination, Token, WebhookSetting};

/// Installs rustls' ring provider once (the HTTP client is built without a default provider, so the
/// process has exactly one TLS stack). [`ClientBuilder::build`] calls it; call it yourself only if you
/// build other rustls clients first.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The name of the nearest event in the catalog to `name`, if one is close enough to be a typo
/// (`incoming_call_strat` → `incoming_call_start`).
pub fn suggest_event(name: &str) -> Option<&'static str> {
    nearest(name, Event::CATALOG.iter().map(|e| e.name()))
}

/// The candidate nearest to `name`, if one is close enough to be a typo of it.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lowered = name.trim().to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lowered, c), c))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, candidate)| *d <= (candidate.len() / 3).max(2))
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_event() {
        assert_eq!(suggest_event("incoming_call_strat"), Some("incoming_call_start"));
        assert_eq!(suggest_event("SMS"), Some("sms"));
        assert_eq!(suggest_event("outgoing_call_ended"), Some("outgoing_call_end"));
        assert_eq!(suggest_event("voicemails"), Some("voicemail"));
        assert_eq!(suggest_event("invalid_event"), None);
        assert_eq!(suggest_event("zzzzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
