//! `sipsim-delivery`: everything between a queued delivery and the customer's server.
//!
//! The [`dispatcher`] claims due deliveries under leases, hands each to the [`sender`], which signs
//! it afresh and POSTs it through the SSRF guard of [`resolve`], then records the attempt and either
//! finishes the delivery or reschedules it by the retry schedule. How many attempts one integration may
//! have in flight is learned from its answers ([`adaptive`]). No database transaction is open
//! while a request is in flight: the lease is committed before sending and the result after.
//!
//! Depends on `sipsim-core` only; the server hands it a `Store`.

pub mod adaptive;
mod attempt;
pub mod dispatcher;
pub mod resolve;
pub mod sender;
mod throttle;
mod upkeep;

pub use adaptive::ConcurrencyLimits;
pub use dispatcher::{Dispatcher, DispatcherConfig, Heartbeat};
pub use sender::{Sender, SenderConfig, Verdict};

/// Installs rustls' ring crypto provider for the whole process, once. reqwest panics when it builds a
/// client without a provider, so every client this crate builds calls this first (tests included).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider was installed first, which is as good for us.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
