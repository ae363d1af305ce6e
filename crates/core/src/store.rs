//! The storage interface. Backends (`sipsim-store`: SQLite and PostgreSQL) implement
//! [`Store`]; everything above it is written against this trait only.
//!
//! The trait speaks in domain types and promises the same semantics on every backend: each method is
//! atomic, and [`Store::change_subscription`] is a single read-modify-write that cannot lose a
//! concurrent change to another event.

use async_trait::async_trait;

use crate::cipher::{SecretRewrite, StoredSecret};
use crate::envelope::WebhookSetting;
use crate::event::Event;
use crate::queue::{
    AttemptRecord, ClaimedDelivery, Completed, DeliveryFilter, DeliveryRecord, FinishedAttempt,
    IngestOutcome, NewMessage, Shares,
};
use crate::secret::{SecretHash, SigningSecret};
use crate::target::WebhookUrl;
use crate::{AccountId, ClientId, DeliveryId, EventSet, MessageId, ScopeSet};

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
        [Self::Enabled, Self::Paused, Self::Disabled]
            .into_iter()
            .find(|st| st.as_str() == s)
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

/// The storage interface every backend implements.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether one node at most may use this database (SQLite, where the server holds a lock file).
    /// Such a node owns every lease it finds at start ([`Store::reclaim_all_leases`]).
    fn single_node(&self) -> bool {
        false
    }

    /// The database's clock (Unix ms) when every node should follow it rather than its own
    /// (PostgreSQL, whose leases several nodes compare); `None` for a single-node backend.
    async fn database_clock_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    /// Passes the [`Signal`]s other processes send to `on_signal`, for as long as it can (reconnecting
    /// by itself), returning only on an error it cannot recover from. A backend without signals
    /// (SQLite: one node, woken directly by its own writers) returns `Ok(())` at once.
    async fn watch(&self, on_signal: &(dyn Fn(Signal) + Send + Sync)) -> Result<(), StoreError> {
        let _ = on_signal;
        Ok(())
    }

    /// Erases an account and everything of it: API clients (their tokens are revoked, as for
    /// [`Store::delete_client`]), integration, dashboard users and sessions, messages, deliveries,
    /// attempt logs and idempotency keys. Returns whether it existed.
    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError>;

    /// Sets how long the account's finished messages are kept, overriding the server's retention
    /// period (`None`: the server's). Returns whether the account exists.
    async fn set_retention(
        &self,
        id: &AccountId,
        retention_ms: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Creates an account.
    async fn create_account(&self, name: &str) -> Result<Account, StoreError>;

    /// Reads an account.
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;

    /// Creates an API client. Fails with [`StoreError::AccountNotFound`] for an unknown account.
    async fn create_client(&self, new: NewApiClient) -> Result<ApiClient, StoreError>;

    /// Reads an API client.
    async fn get_client(&self, id: &ClientId) -> Result<Option<ApiClient>, StoreError>;

    /// Lists an account's API clients, oldest first.
    async fn list_clients(&self, account: &AccountId) -> Result<Vec<ApiClient>, StoreError>;

    /// Deletes an API client and appends it to the revocation log, atomically. Returns whether it existed.
    async fn delete_client(&self, id: &ClientId) -> Result<bool, StoreError>;

    /// Notes that a client obtained a token at `at_ms`.
    async fn record_client_use(&self, id: &ClientId, at_ms: i64) -> Result<(), StoreError>;

    /// The revocation log after position `seq`, in order.
    async fn revocations_after(&self, seq: i64) -> Result<Vec<Revocation>, StoreError>;

    /// A number that changes whenever any integration is created, removed, or has its settings
    /// (URL, state, subscriptions, secrets) changed, by any process: what in-memory caches of
    /// integrations compare against. Never moves for delivery bookkeeping.
    async fn settings_version(&self) -> Result<i64, StoreError>;

    /// Reads an account's integration.
    async fn get_integration(&self, account: &AccountId)
    -> Result<Option<Integration>, StoreError>;

    /// Creates or changes an account's integration; returns it and whether it was created.
    async fn put_integration(
        &self,
        account: &AccountId,
        update: IntegrationUpdate,
    ) -> Result<(Integration, bool), StoreError>;

    /// Removes an account's integration. Returns whether there was one.
    async fn remove_integration(&self, account: &AccountId) -> Result<bool, StoreError>;

    /// Gives the integration `new_secret`, keeping the current one valid (signed beside it in
    /// `webhook-signature`) until `old_valid_until_ms`. `None` when the account has no integration.
    async fn rotate_signing_secret(
        &self,
        account: &AccountId,
        new_secret: &SigningSecret,
        old_valid_until_ms: i64,
    ) -> Result<Option<Integration>, StoreError>;

    /// Applies one subscription change atomically. `None` when the account has no integration.
    async fn change_subscription(
        &self,
        account: &AccountId,
        change: SubscriptionChange,
    ) -> Result<Option<Integration>, StoreError>;

    /// Returns the value stored under `key`, storing `candidate` first if there is none. Concurrent
    /// callers with different candidates all get the same, first-stored value.
    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError>;

    /// Every secret the database holds, as stored: integrations' signing secrets and previous
    /// signing secrets, and the secret settings ([`crate::cipher::SECRET_SETTINGS`]).
    async fn stored_secrets(&self) -> Result<Vec<StoredSecret>, StoreError>;

    /// Writes `rewrites` in one transaction, each only where its slot still holds what was read.
    /// All or nothing: `Ok(false)`, with nothing written, when one had changed meanwhile.
    async fn rewrite_secrets(&self, rewrites: &[SecretRewrite]) -> Result<bool, StoreError>;

    // --- Dashboard users and sessions. ---

    /// Creates a dashboard user; [`StoreError::EmailTaken`] if the (lowercased) email is in use,
    /// [`StoreError::AccountNotFound`] for an unknown account.
    async fn create_user(
        &self,
        account: &AccountId,
        email: &str,
        password_hash: &str,
    ) -> Result<User, StoreError>;

    /// The user with this email (compared lowercased).
    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;

    /// Stores a new session.
    async fn create_session(&self, session: &Session) -> Result<(), StoreError>;

    /// The session with this token hash and its user, unless it ended before `now_ms`.
    async fn get_session(
        &self,
        token_hash: &SecretHash,
        now_ms: i64,
    ) -> Result<Option<(Session, User)>, StoreError>;

    /// Ends a session (log out). Returns whether it existed.
    async fn delete_session(&self, token_hash: &SecretHash) -> Result<bool, StoreError>;

    // --- The delivery queue (see `crate::queue`). ---

    /// Stores several independent batches of messages in one transaction (group commit). Each batch
    /// is atomic on its own: all of it or none. Each message gets a delivery, due at `now_ms`, when its
    /// account's integration is enabled and subscribed to its event at this moment (the subscription
    /// is snapshotted here). A repeated idempotency key within 24 h stores nothing. A batch naming an
    /// account that does not exist gets [`StoreError::AccountNotFound`] and stores nothing; the other
    /// batches are unaffected. The outer error means nothing at all was stored.
    async fn ingest_groups(
        &self,
        groups: &[&[NewMessage]],
        now_ms: i64,
    ) -> Result<Vec<Result<Vec<IngestOutcome>, StoreError>>, StoreError>;

    /// How many [`Store::ingest_groups`] calls are worth running at once: one where writes take
    /// turns anyway (SQLite's single write lock), more where independent batches can commit side
    /// by side (PostgreSQL: rows and chains are locked one by one, so one batch's commit need not
    /// wait for another's).
    fn ingest_writers(&self) -> usize {
        1
    }

    /// [`Store::ingest_groups`] for a single batch.
    async fn ingest(
        &self,
        batch: &[NewMessage],
        now_ms: i64,
    ) -> Result<Vec<IngestOutcome>, StoreError> {
        self.ingest_groups(&[batch], now_ms)
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("no result for the batch".into())))
    }

    /// Claims up to `limit` deliveries due at `now_ms` whose integration is enabled, leasing them until
    /// `now_ms + lease_ms`. It visits the accounts with due work in turn, continuing after the last
    /// one the previous claim reached (round robin), and takes from each at most its free slots in
    /// `shares`, oldest due first. Behind each claimed head of a chain it also leases the deliveries
    /// waiting right behind it, up to [`TRAIN_LEN`](crate::queue::TRAIN_LEN) in all (they do not
    /// count against `limit` or the account's slots: one task sends them). The lease is committed
    /// before this returns.
    async fn claim_due(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
        shares: &Shares,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Hands claimed deliveries back unsent (the attempt not counted), for those a dispatcher took
    /// but has no slot for, and a train's deliveries it did not send. Each only if its lease token
    /// still holds it. An unordered delivery is due as before; one of a chain is due at `now_ms` if
    /// it is now its chain's earliest unfinished delivery (as before, for a head), and otherwise
    /// waits for its turn.
    async fn unclaim(
        &self,
        claimed: &[(DeliveryId, String)],
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Records attempts and ends their deliveries' leases with their completions, in one transaction
    /// (group commit). Each is applied only if its lease token still holds the delivery; the result
    /// says, for each, whether it did (false: the lease had expired and the delivery was claimed
    /// again, so this result is dropped and not logged), and how many of the calls' next
    /// deliveries it made due.
    async fn complete(&self, finished: &[FinishedAttempt]) -> Result<Completed, StoreError>;

    /// Makes deliveries whose lease expired at or before `now_ms` due again at once. Returns how many.
    async fn release_expired_leases(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Makes *every* leased delivery due again at `now_ms`, expired or not. Only for a single-node
    /// backend starting up (SQLite), where every lease left belongs to a previous run of this node.
    async fn reclaim_all_leases(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// When the earliest pending delivery of an enabled integration is due, if any.
    async fn next_due_at(&self) -> Result<Option<i64>, StoreError>;

    /// Answers a trivial query: the database is reachable (readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Writes (and commits) 64 KiB and removes them again: the database can grow right now.
    /// Readiness checks use it while writes are failing for want of space, to see when that ends.
    async fn write_probe(&self) -> Result<(), StoreError>;

    /// What the queue holds at `now_ms`, for metrics.
    async fn queue_stats(&self, now_ms: i64) -> Result<QueueStats, StoreError>;

    /// Pauses an enabled integration at once (its endpoint answered 410 Gone). Returns whether it was
    /// enabled.
    async fn pause_integration(
        &self,
        account: &AccountId,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Pauses every enabled integration whose attempts have all failed since before
    /// `failing_since_before`; returns their accounts.
    async fn pause_failing_integrations(
        &self,
        failing_since_before: i64,
        now_ms: i64,
    ) -> Result<Vec<AccountId>, StoreError>;

    /// Ends a pause: the integration is enabled again and the deliveries kept while it was paused
    /// are delivered now or dropped. `None` if it was not paused; otherwise how many were kept.
    async fn resume_integration(
        &self,
        account: &AccountId,
        kept: KeptDeliveries,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError>;

    /// Retention: deletes messages created before `cutoff_ms` — or before `now_ms` minus their
    /// account's own period, where one is set ([`Store::set_retention`]) — with their deliveries and
    /// attempts, unless a delivery of theirs is still pending or in flight; idempotency keys past their 24 h;
    /// and revocations older than `revocations_before_ms`. Returns how many messages were deleted.
    async fn prune(
        &self,
        cutoff_ms: i64,
        revocations_before_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Keeps the database's query planner informed: on PostgreSQL, analyzes each queue table that
    /// changed by more than autovacuum's own threshold (50 rows and a tenth of the table) since it was
    /// last analyzed, as autovacuum would — where autovacuum is off, or has not come round yet after
    /// a burst, plans cached while a table was nearly empty stay in use, and they read the whole
    /// table for each row (measured: 200 ms per completion, two minutes per claim at 25,000
    /// queued). Returns the tables analyzed. SQLite needs nothing: its queue statements name their
    /// index.
    async fn refresh_planner_statistics(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Logs a *Send Test* attempt that was already made (the `test` event is never queued or retried):
    /// a message, its delivery in its final state and the attempt, in one transaction.
    async fn record_test_attempt(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        body: &[u8],
        record: &AttemptRecord,
        succeeded: bool,
    ) -> Result<DeliveryId, StoreError>;

    /// An account's deliveries matching `filter`, newest first, starting after `before` (keyset
    /// pagination), at most `limit`.
    async fn list_deliveries(
        &self,
        account: &AccountId,
        filter: &DeliveryFilter,
        before: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Queues the message of `account`'s delivery `id` again as a new delivery, due at `now_ms`,
    /// and returns it; `None` when the account has no such delivery.
    async fn resend(
        &self,
        account: &AccountId,
        id: &DeliveryId,
        now_ms: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Queues again, as new deliveries due at `now_ms`, every message of `account` created since
    /// `since_ms` whose latest delivery failed (test events excepted), at most `limit`; returns how many.
    async fn resend_failed_since(
        &self,
        account: &AccountId,
        since_ms: i64,
        now_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// `account`'s attempts since `since_ms`, counted in buckets of `bucket_ms`, oldest first; empty
    /// buckets are left out.
    async fn attempt_buckets(
        &self,
        account: &AccountId,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<AttemptBucket>, StoreError>;

    /// Reads a delivery.
    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;

    /// The exact body a message's deliveries send.
    async fn message_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError>;

    /// A delivery's attempts, oldest first.
    async fn list_attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError>;
}
