//! `sipsim-core`: the parts of sipsim-webhooks that every other crate agrees on.
//!
//! It owns the wire contract (the response envelope, [`WebhookSetting`](envelope::WebhookSetting), the
//! event catalog), the domain types (ids, scopes, webhook URLs, secrets) and the [`Store`](store::Store)
//! trait with its error type. It does no I/O and knows nothing of axum or sqlx: the HTTP layer
//! (`sipsim-server`) and the storage backends (`sipsim-store`) depend on it, never the other way round.

#[doc(hidden)]
pub mod checks;
pub mod cipher;
pub mod clock;
pub mod envelope;
pub mod event;
pub mod ids;
pub mod ingest;
pub mod jwt;
pub mod notice;
pub mod payload;
pub mod queue;
pub mod random;
pub mod retry;
pub mod scope;
pub mod secret;
pub mod signing;
pub mod store;
pub mod target;

pub use event::{Event, EventSet};
pub use ids::{AccountId, ClientId, DeliveryId, MessageId, UserId};
pub use scope::{Scope, ScopeSet};
pub use store::{Store, StoreError};

/// An error and all its sources, `outer: cause: root cause`: what a log line or a message needs
/// (many errors' own text is only the outermost layer, reqwest's "error sending request" say).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    out.push_str(&causes(e));
    out
}

/// The sources of `e` alone, each after `": "` (empty when it has none).
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_chain_names_every_cause_in_order() {
        let e = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "connection refused",
                Some(Box::new(Layer("os error 111", None))),
            ))),
        );
        assert_eq!(
            super::error_chain(&e),
            "error sending request: connection refused: os error 111"
        );
        assert_eq!(super::causes(&Layer("alone", None)), "");
    }
}
