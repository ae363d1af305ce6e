//! The storage interface, cut by role: each trait is one kind of thing the server keeps, and
//! [`Store`] is all of them. Code that needs one role names that trait; a backend implements each
//! trait once (`sipsim-store` writes the SQL both dialects accept once, for both, and the queue per
//! backend).
//!
//! Every method is atomic and means the same on every backend; the conformance suite in
//! `sipsim-store` holds each backend to that.

use async_trait::async_trait;

use super::{
    Account, ApiClient, AttemptBucket, DeliveryRate, Integration, IntegrationUpdate,
    KeptDeliveries, NewApiClient, QueueStats, Revocation, Session, Signal, StoreError,
    SubscriptionChange, User,
};
use crate::cipher::{SecretRewrite, StoredSecret};
use crate::notice::{NoticeFacts, Owed, RecentResponses};
use crate::queue::{
    AttemptRecord, ClaimedDelivery, Completed, DeliveryFilter, DeliveryRecord, FinishedAttempt,
    IngestOutcome, NewMessage, Shares,
};
use crate::secret::{SecretHash, SigningSecret};
use crate::{AccountId, ClientId, DeliveryId, MessageId};

/// Everything the server keeps: every role at once, what a node holds as `Arc<dyn Store>`.
/// Each backend's store says it is one (`impl Store for SqliteStore {}`), once it has every role.
pub trait Store:
    Accounts
    + Clients
    + Users
    + Integrations
    + Notices
    + Secrets
    + DeliveryLog
    + DeliveryQueue
    + Health
    + Cluster
    + 'static
{
}

/// Accounts (tenants): what every other row belongs to.
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Creates an account.
    async fn create_account(&self, name: &str) -> Result<Account, StoreError>;

    /// Reads an account.
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;

    /// Sets how long the account's finished messages are kept, overriding the server's retention
    /// period (`None`: the server's). Returns whether the account exists.
    async fn set_retention(
        &self,
        id: &AccountId,
        retention_ms: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Erases an account and everything of it: API clients (their tokens are revoked, as for
    /// [`Clients::delete_client`]), integration, dashboard users and sessions, messages, deliveries,
    /// attempt logs and idempotency keys. Returns whether it existed.
    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError>;
}

/// An account's API clients (OAuth client credentials) and the log of deleted ones that nodes replay.
#[async_trait]
pub trait Clients: Send + Sync {
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
}

/// Dashboard users and their sessions.
#[async_trait]
pub trait Users: Send + Sync {
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

    /// An account's dashboard users, oldest first.
    async fn list_users(&self, account: &AccountId) -> Result<Vec<User>, StoreError>;

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
}

/// An account's webhook integration: URL, state, subscriptions, signing secrets, pauses.
#[async_trait]
pub trait Integrations: Send + Sync {
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

    /// Sets (or, with `None`, removes) the integration's maximum delivery rate. `None` when the
    /// account has no integration.
    async fn set_delivery_rate(
        &self,
        account: &AccountId,
        rate: Option<DeliveryRate>,
    ) -> Result<Option<Integration>, StoreError>;

    /// Every integration that has a maximum delivery rate, with it: what the dispatchers throttle.
    async fn delivery_rates(&self) -> Result<Vec<(AccountId, DeliveryRate)>, StoreError>;
}

/// Failure emails ([`crate::notice`]): the integrations that may be owed one, what their endpoints
/// answered lately, and the claims that make one node send each notice, once.
#[async_trait]
pub trait Notices: Send + Sync {
    /// Every integration that may be owed a notice: paused ones (since a known time), enabled ones
    /// failing since `failing_since_before` or earlier, and those whose last *failing* or *paused*
    /// notice has no *recovered* notice answering it.
    async fn notice_facts(&self, failing_since_before: i64)
    -> Result<Vec<NoticeFacts>, StoreError>;

    /// What the account's endpoint answered in its newest deliveries.
    async fn recent_responses(&self, account: &AccountId) -> Result<RecentResponses, StoreError>;

    /// Claims `owed` for the caller to send until `claimed_until_ms`: `true` only where the
    /// integration exists, the kind's last notice is of another episode and went out before
    /// `sent_before_ms` (or never), and no other claim holds at `now_ms`. Of concurrent callers
    /// (nodes) at most one gets `true`.
    async fn claim_notice(
        &self,
        account: &AccountId,
        owed: Owed,
        now_ms: i64,
        sent_before_ms: i64,
        claimed_until_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Records a claimed notice as sent at `now_ms`. `false` when the claim was not found (the
    /// integration was removed meanwhile).
    async fn notice_sent(
        &self,
        account: &AccountId,
        owed: Owed,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
}

/// Server-wide settings kept in the database (the token-signing key, the encryption canary) and every stored secret, for re-encryption.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// Returns the value stored under `key`, storing `candidate` first if there is none. Concurrent
    /// callers with different candidates all get the same, first-stored value.
    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError>;

    /// Every secret the database holds, as stored: integrations' signing secrets and previous
    /// signing secrets, and the secret settings ([`crate::cipher::SECRET_SETTINGS`]).
    async fn stored_secrets(&self) -> Result<Vec<StoredSecret>, StoreError>;

    /// Writes `rewrites` in one transaction, each only where its slot still holds what was read.
    /// All or nothing: `Ok(false)`, with nothing written, when one had changed meanwhile.
    async fn rewrite_secrets(&self, rewrites: &[SecretRewrite]) -> Result<bool, StoreError>;
}

/// What was delivered and how: deliveries and attempts as users read them, resends, the test event, retention.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
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

    /// An account's deliveries matching `filter`, newest first (oldest first for one call's,
    /// [`DeliveryFilter::oldest_first`]), starting after `cursor` in that order (keyset
    /// pagination), at most `limit`.
    async fn list_deliveries(
        &self,
        account: &AccountId,
        filter: &DeliveryFilter,
        cursor: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Reads a delivery.
    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;

    /// A delivery's attempts, oldest first.
    async fn list_attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError>;

    /// The exact body a message's deliveries send.
    async fn message_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError>;

    /// `account`'s attempts since `since_ms`, counted in buckets of `bucket_ms`, oldest first; empty
    /// buckets are left out.
    async fn attempt_buckets(
        &self,
        account: &AccountId,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<AttemptBucket>, StoreError>;

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

    /// Retention: deletes messages created before `cutoff_ms` — or before `now_ms` minus their
    /// account's own period, where one is set ([`Accounts::set_retention`]) — with their deliveries and
    /// attempts, unless a delivery of theirs is still pending or in flight; idempotency keys past their 24 h;
    /// and revocations older than `revocations_before_ms`. Returns how many messages were deleted.
    async fn prune(
        &self,
        cutoff_ms: i64,
        revocations_before_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// How many of the account's deliveries wait to be sent or are being sent now (pending or
    /// delivering): its backlog.
    async fn backlog(&self, account: &AccountId) -> Result<u64, StoreError>;
}

/// The delivery queue (see `crate::queue`): ingest, claims, leases, results. Each backend writes its own: this is where the dialects differ.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
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

    /// How many [`Self::ingest_groups`] calls are worth running at once: one where writes take
    /// turns anyway (SQLite's single write lock), more where independent batches can commit side
    /// by side (PostgreSQL: rows and chains are locked one by one, so one batch's commit need not
    /// wait for another's).
    fn ingest_writers(&self) -> usize {
        1
    }

    /// [`Self::ingest_groups`] for a single batch.
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

    /// What the queue holds at `now_ms`, for metrics.
    async fn queue_stats(&self, now_ms: i64) -> Result<QueueStats, StoreError>;

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
}

/// What readiness checks ask of the database.
#[async_trait]
pub trait Health: Send + Sync {
    /// Answers a trivial query: the database is reachable (readiness checks).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Writes (and commits) 64 KiB and removes them again: the database can grow right now.
    /// Readiness checks use it while writes are failing for want of space, to see when that ends.
    async fn write_probe(&self) -> Result<(), StoreError>;
}

/// How this database is shared between nodes: one node (SQLite) or many (PostgreSQL), whose clock, and the signals nodes send each other.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Whether one node at most may use this database (SQLite, where the server holds a lock file).
    /// Such a node owns every lease it finds at start ([`DeliveryQueue::reclaim_all_leases`]).
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
}
