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
