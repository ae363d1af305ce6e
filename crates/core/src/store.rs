//! What the store keeps, in domain types: accounts, clients, users, integrations, and what can go
//! wrong. The traits that read and write them, one per role, are in [`roles`]; backends
//! (`sipsim-store`: SQLite and PostgreSQL) implement them, and everything above is written against
//! them only. [`Integrations::change_subscription`] is a single read-modify-write that cannot lose
//! a concurrent change to another event.

pub mod roles;

pub use roles::{
    Accounts, Clients, Cluster, DeliveryLog, DeliveryQueue, Health, Integrations, Notices, Secrets,
    Store, Users,
};

use crate::envelope::WebhookSetting;
use crate::event::Event;
use crate::secret::{SecretHash, SigningSecret};
use crate::target::WebhookUrl;
use crate::{AccountId, ClientId, EventSet, ScopeSet};

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The account named by the operation does not exist.
    #[error("account {0} does not exist")]
    AccountNotFound(AccountId),
    /// Stored data could not be read back into domain types (a bug or manual tampering).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A dashboard user with this email exists already.
    #[error("a user with this email exists already")]
    EmailTaken,
    /// A stored secret cannot be decrypted with this process's `SIPSIM_ENCRYPTION_KEY` (missing,
    /// or not the key it was sealed with). Nothing was changed.
    #[error("a stored secret cannot be decrypted: {0}")]
    SecretUnreadable(String),
    /// The database cannot grow: its disk (or, on SQLite, its configured maximum size) is full. The
    /// operation was rolled back whole; it may succeed once space is freed.
    #[error("storage is full: {0}")]
    StorageFull(String),
    /// The database failed (connection, I/O, constraint). The source is kept for the logs.
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A condition that is either clear or raised with a reason, shared by whoever raises it and whoever
/// reports it (`/readyz`): writes failing for want of space, a dispatcher that stopped claiming.
/// Cheap to clone: every clone is the same alarm.
#[derive(Debug, Clone, Default)]
pub struct Alarm(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Alarm {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Raises the alarm, saying why.
    pub fn raise(&self, why: String) {
        *self.lock() = Some(why);
    }

    /// Raises the alarm if `result` failed for want of space ([`StoreError::StorageFull`]);
    /// passes `result` on.
    pub fn watch_storage<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::StorageFull(why)) = &result {
            self.raise(why.clone());
        }
        result
    }

    /// Why it is raised, while it is.
    pub fn raised(&self) -> Option<String> {
        self.lock().clone()
    }

    /// Clears it; returns whether it was raised.
    pub fn lower(&self) -> bool {
        self.lock().take().is_some()
    }
}

/// An account (tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// A display name.
    pub name: String,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
}

/// An API client of an account, as stored (its secret only as a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    /// Its id, the OAuth `client_id`.
    pub id: ClientId,
    /// The account it acts for.
    pub account_id: AccountId,
    /// A display name.
    pub name: String,
    /// The scopes it may request.
    pub scopes: ScopeSet,
    /// SHA-256 of its secret.
    pub secret_hash: SecretHash,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// When it last obtained a token, Unix ms.
    pub last_used_at_ms: Option<i64>,
}

/// What is needed to create an API client.
#[derive(Debug, Clone)]
pub struct NewApiClient {
    /// The account it acts for.
    pub account_id: AccountId,
    /// A display name.
    pub name: String,
    /// The scopes it may request.
    pub scopes: ScopeSet,
    /// SHA-256 of its secret.
    pub secret_hash: SecretHash,
}

/// A dashboard user of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: crate::UserId,
    /// The account it manages.
    pub account_id: AccountId,
    /// Its login, stored lowercased.
    pub email: String,
    /// Its password as an argon2 PHC string.
    pub password_hash: String,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
}

/// A dashboard session: only the hash of its cookie's token is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie's token.
    pub token_hash: SecretHash,
    /// Who is logged in.
    pub user_id: crate::UserId,
    /// The token every form of this session must carry (CSRF).
    pub csrf_token: String,
    /// When it ends, Unix ms.
    pub expires_at_ms: i64,
}

/// The delivery queue at one moment (`/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Deliveries waiting: due, scheduled for a retry, behind an earlier event of their call, or
    /// kept for a paused integration.
    pub pending: u64,
    /// Of those, due now at an enabled integration (what the dispatchers should be sending).
    pub due: u64,
    /// When the longest-waiting due delivery became due, Unix ms.
    pub oldest_due_ms: Option<i64>,
    /// Attempts in flight (leased).
    pub in_flight: u64,
    /// Integrations paused (410 Gone, or failing for days).
    pub paused_integrations: u64,
}

/// Attempts to an account's endpoint in one time bucket (the dashboard's 24-hour chart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptBucket {
    /// The bucket's start, Unix ms.
    pub start_ms: i64,
    /// Attempts started in it.
    pub attempts: u64,
    /// Of those, answered 2xx.
    pub succeeded: u64,
    /// Their mean duration, ms.
    pub mean_ms: i64,
    /// The slowest, ms.
    pub max_ms: i64,
}

/// A deleted API client, in deletion order: nodes replay these to reject the client's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Position in the revocation log (increasing).
    pub seq: i64,
    /// The deleted client.
    pub client_id: ClientId,
}

/// The state of an integration (DESIGN.md § Integration states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationState {
    /// Delivering.
    Enabled,
    /// Paused automatically (endpoint gone or failing for days); events are kept.
    Paused,
    /// Turned off by a user; new events are not stored.
    Disabled,
}

impl IntegrationState {
    /// The stored and displayed name.
    pub const fn as_str(self) -> &'static str {
        match self {
            IntegrationState::Enabled => "enabled",
            IntegrationState::Paused => "paused",
            IntegrationState::Disabled => "disabled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Enabled, Self::Paused, Self::Disabled].into_iter().find(|st| st.as_str() == s)
    }
}

/// An account's webhook integration: one URL, its state, its subscriptions and its signing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// Where events are POSTed.
    pub webhook_url: WebhookUrl,
    /// Enabled, paused or disabled.
    pub state: IntegrationState,
    /// Subscribed events.
    pub events: EventSet,
    /// The secret deliveries are signed with.
    pub signing_secret: SigningSecret,
    /// Increases on every change (for caches).
    pub version: i64,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
    /// Why it is paused, when it is.
    pub paused_reason: Option<String>,
    /// The secret it had before the last regeneration, and until when (Unix ms) deliveries are also
    /// signed with it in `webhook-signature`.
    pub previous_signing_secret: Option<(SigningSecret, i64)>,
    /// The most deliveries per second the customer wants, when set.
    pub max_rate: Option<DeliveryRate>,
}

/// A maximum delivery rate, in thousandths of a delivery per second (so 0.5/s is 500): from
/// 0.001/s to 10,000/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryRate(u32);

impl DeliveryRate {
    /// The slowest rate: one delivery per 1,000 seconds.
    pub const MIN_MILLI: u32 = 1;
    /// The fastest: 10,000 deliveries per second.
    pub const MAX_MILLI: u32 = 10_000_000;

    /// A rate of `milli` thousandths of a delivery per second, if within bounds.
    pub fn from_milli(milli: i64) -> Option<Self> {
        u32::try_from(milli)
            .ok()
            .filter(|m| (Self::MIN_MILLI..=Self::MAX_MILLI).contains(m))
            .map(DeliveryRate)
    }

    /// Parses a number of deliveries per second (`5`, `0.5`, `12.25`); at most three decimals.
    pub fn parse(per_second: &str) -> Option<Self> {
        let text = per_second.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && fraction.is_empty()
            || !digits(whole)
            || !digits(fraction)
            || fraction.len() > 3
        {
            return None;
        }
        let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let fraction: i64 = format!("{fraction:0<3}").parse().ok()?;
        Self::from_milli(whole.checked_mul(1000)?.checked_add(fraction)?)
    }

    /// Thousandths of a delivery per second.
    pub fn milli(self) -> u32 {
        self.0
    }

    /// Deliveries per second.
    pub fn per_second(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl std::fmt::Display for DeliveryRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, fraction) = (self.0 / 1000, self.0 % 1000);
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let fraction = format!("{fraction:03}");
            write!(f, "{whole}.{}", fraction.trim_end_matches('0'))
        }
    }
}

impl Integration {
    /// The contract's `WebhookSetting` view: `enabled` is true only in the `enabled` state.
    pub fn setting(&self) -> WebhookSetting {
        WebhookSetting {
            webhook_url: self.webhook_url.as_str().to_owned(),
            enabled: self.state == IntegrationState::Enabled,
            subscribed_events: self.events.names(),
        }
    }
}

/// The operator's `integration set`: create the integration, or change an existing one.
#[derive(Debug, Clone)]
pub struct IntegrationUpdate {
    /// The URL to deliver to.
    pub webhook_url: WebhookUrl,
    /// `true` switches to (or creates as) `disabled`; `false` switches a `disabled` one to `enabled`.
    /// A `paused` integration stays paused: only resuming ends a pause.
    pub disabled: bool,
    /// Replaces the subscriptions when given; a new integration without it subscribes to nothing.
    pub events: Option<EventSet>,
    /// The signing secret a *new* integration gets. Never applied to an existing one.
    pub new_signing_secret: SigningSecret,
}

/// What resuming a paused integration does with the events kept during the pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptDeliveries {
    /// Deliver them now.
    Deliver,
    /// Mark them failed ("dropped"), without sending.
    Drop,
}

/// One subscription change from the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionChange {
    /// Add the event (no effect if present).
    Subscribe(Event),
    /// Remove the event (no effect if absent).
    Unsubscribe(Event),
}

/// A change made by another process (another node) that this one should act on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Deliveries became due (ingest, resend, resume, a call's next event released, a hand-back).
    Due,
    /// An API client was deleted: refresh the revocation list now.
    Revoked,
    /// An integration's settings changed: drop what is cached of them.
    SettingsChanged,
}

#[cfg(test)]
mod tests {
    use super::DeliveryRate;

    #[test]
    fn delivery_rates_are_read_and_shown_per_second() {
        for (text, milli, shown) in [
            ("5", 5000, "5"),
            ("0.5", 500, "0.5"),
            (".25", 250, "0.25"),
            ("12.125", 12125, "12.125"),
        ] {
            let rate = DeliveryRate::parse(text).unwrap();
            assert_eq!((rate.milli(), rate.to_string()), (milli, shown.to_owned()), "{text}");
        }
        for bad in ["", ".", "0", "0.0001", "-1", "1e3", "10001", "1.2.3", "five", "1,5"] {
            assert_eq!(DeliveryRate::parse(bad), None, "{bad}");
        }
        assert_eq!(DeliveryRate::parse(" 2 ").map(DeliveryRate::milli), Some(2000));
    }
}
