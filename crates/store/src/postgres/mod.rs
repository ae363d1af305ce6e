//! The PostgreSQL backend: for production and for several `sipsimd` nodes on one database
//! (`postgres://…`).
//!
//! The same tables and semantics as SQLite, plus what many nodes need: claims take rows with
//! `FOR UPDATE SKIP LOCKED` (two nodes never claim one delivery), a per-key advisory lock makes a
//! call's sequence numbers follow commit order, writes that make work due `NOTIFY` the other nodes
//! ([`Store::watch`]; ingest right after its commit, `signal.rs`), periodic jobs take a try-lock so
//! one node runs each at a time, and migrations run under sqlx's advisory lock so nodes can start
//! together.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sipsim_core::cipher::{SecretCipher, SecretRewrite, StoredSecret, seal};
use sipsim_core::clock::now_ms;
use sipsim_core::queue::{
    AttemptRecord, ClaimedDelivery, Completed, DeliveryFilter, DeliveryRecord, FinishedAttempt,
    IngestOutcome, NewMessage, Shares,
};
use sipsim_core::secret::{SecretHash, SigningSecret};
use sipsim_core::store::{
    Account, ApiClient, AttemptBucket, Integration, IntegrationState, IntegrationUpdate,
    KeptDeliveries, NewApiClient, QueueStats, Revocation, Session, Signal, SubscriptionChange,
    User,
};
use sipsim_core::{
    AccountId, ClientId, DeliveryId, EventSet, MessageId, Store, StoreError, UserId,
};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, Row, SqlSafeStr as _};

use crate::rotation::Rotation;
use crate::rows::{
    self, CLIENT_COLUMNS, INTEGRATION_COLUMNS, SESSION_COLUMNS, USER_COLUMNS, secret_context,
};
use crate::{backend, migrate_error};

mod queue;
mod signal;

/// The PostgreSQL migrations, embedded at compile time.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "users and sessions",
        include_str!("../../migrations/postgres/0002_users_sessions.sql"),
    ),
    (
        3,
        "secret rotation",
        include_str!("../../migrations/postgres/0003_secret_rotation.sql"),
    ),
    (
        4,
        "account retention",
        include_str!("../../migrations/postgres/0004_account_retention.sql"),
    ),
    (
        5,
        "settings version",
        include_str!("../../migrations/postgres/0005_settings_version.sql"),
    ),
    (
        6,
        "due by account",
        include_str!("../../migrations/postgres/0006_due_by_account.sql"),
    ),
    (
        7,
        "queue functions",
        include_str!("../../migrations/postgres/0007_queue_functions.sql"),
    ),
    (
        8,
        "ingest function",
        include_str!("../../migrations/postgres/0008_ingest_function.sql"),
    ),
    (
        9,
        "low rate costs",
        include_str!("../../migrations/postgres/0009_low_rate_costs.sql"),
    ),
    (
        10,
        "chain locks late",
        include_str!("../../migrations/postgres/0010_chain_locks_late.sql"),
    ),
    (
        11,
        "claim in one call",
        include_str!("../../migrations/postgres/0011_claim_in_one_call.sql"),
    ),
];

/// The channel on which a write that made deliveries due wakes every node's dispatcher (migration
/// 0007 and 0008 name it too).
const DUE_CHANNEL: &str = "sipsim_due";
/// The channel on which deleting an API client makes every node refresh its revocations.
const REVOKED_CHANNEL: &str = "sipsim_revoked";

/// The channel on which the `settings_version` trigger says an integration's settings changed
/// (migration 0005 names it too).
const SETTINGS_CHANNEL: &str = "sipsim_settings";

/// A pooled connection idle for longer than this is pinged before it is used again.
const RECHECK_IDLE: Duration = Duration::from_secs(1);

/// Ingest transactions a node runs at once. Batches touching the same call or idempotency key
/// wait for each other on its advisory lock (so a call's events are numbered in commit order);
/// others commit side by side, each one call and a WAL flush that PostgreSQL shares between
/// them. A quarter of the default pool, leaving the rest to claims and results.
const INGEST_WRITERS: usize = 4;

/// A PostgreSQL database holding all of sipsim-webhooks' state, shared by any number of nodes.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Seals signing secrets at rest when the operator configured a key.
    cipher: Option<SecretCipher>,
    /// Where this node's last claim stopped among the accounts with due work.
    rotation: Arc<Rotation>,
    /// Wakes the other nodes after an ingest commit.
    due: signal::DueSignal,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db?…`) with a pool of
    /// at most `max_connections`. Does not migrate: call [`PgStore::migrate`].
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(backend)?
            .application_name("sipsimd");
        let tag = signal::node_tag();
        let on_connect = tag.clone();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it takes back into the pool, and by default again before
            // handing it out: a second round trip per statement, and a wake-up of a database
            // process, for a connection checked a moment ago. Only one that sat idle is checked
            // again (one that fails is dropped and another taken, as before).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for < RECHECK_IDLE {
                        return Ok(true);
                    }
                    conn.ping().await.map(|()| true)
                })
            })
            // Each connection carries the node's tag, which its functions put on their notifications.
            .after_connect(move |conn, _| {
                let tag = on_connect.clone();
                Box::pin(async move {
                    sqlx::query(signal::SET_TAG)
                        .bind(tag)
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await
            .map_err(backend)?;
        Ok(PgStore {
            due: signal::DueSignal::spawn(pool.clone(), tag),
            pool,
            cipher: None,
            rotation: Arc::default(),
        })
    }

    /// Encrypts signing secrets at rest with `cipher` (and reads sealed ones back with it).
    pub fn with_cipher(mut self, cipher: Option<SecretCipher>) -> Self {
        self.cipher = cipher;
        self
    }

    /// Applies every pending migration. sqlx holds a PostgreSQL advisory lock for the whole run, so
    /// nodes starting at the same moment apply each migration exactly once, one after the other.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator().run(&self.pool).await.map_err(migrate_error)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The migrator over [`MIGRATIONS`].
pub(crate) fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                AssertSqlSafe(*sql).into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// Queues a wake-up of every node's dispatcher, sent when the surrounding transaction commits
/// (PostgreSQL folds repeats within one transaction into one).
async fn notify_due(conn: &mut PgConnection) -> Result<(), StoreError> {
    notify(conn, DUE_CHANNEL).await
}

/// Queues a notification on `channel`, sent when the surrounding transaction commits.
async fn notify(conn: &mut PgConnection, channel: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// The advisory-lock keys of periodic jobs, so that one node at a time runs each.
#[derive(Clone, Copy)]
#[repr(i64)]
enum Job {
    ReleaseLeases = 0x5149_5053_0001,
    PauseFailing = 0x5149_5053_0002,
    Prune = 0x5149_5053_0003,
    Analyze = 0x5149_5053_0004,
}

/// Takes the job's transaction-scoped try-lock: `false` when another node is running it right now
/// (this node then skips its turn).
async fn job_lock(conn: &mut PgConnection, job: Job) -> Result<bool, StoreError> {
    sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
        .bind(job as i64)
        .fetch_one(conn)
        .await
        .map_err(backend)?
        .try_get(0)
        .map_err(backend)
}

/// Fails with [`StoreError::AccountNotFound`] unless `account` exists, inside `tx`.
async fn ensure_account(
    conn: &mut sqlx::PgConnection,
    account: &AccountId,
) -> Result<(), StoreError> {
    let exists = sqlx::query("SELECT 1 FROM accounts WHERE id = $1")
        .bind(account.as_str())
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    match exists {
        Some(_) => Ok(()),
        None => Err(StoreError::AccountNotFound(account.clone())),
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_user(
        &self,
        account: &AccountId,
        email: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let user = User {
            id: UserId::generate(),
            account_id: account.clone(),
            email: email.trim().to_lowercase(),
            password_hash: password_hash.to_owned(),
            created_at_ms: now_ms(),
        };
        let mut tx = self.pool.begin().await.map_err(backend)?;
        ensure_account(&mut tx, account).await?;
        sqlx::query(
            "INSERT INTO users (id, account_id, email, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id.as_str())
        .bind(user.account_id.as_str())
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(user.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if rows::is_unique_violation(&e) {
                StoreError::EmailTaken
            } else {
                backend(e)
            }
        })?;
        tx.commit().await.map_err(backend)?;
        Ok(user)
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|r| rows::user(&r))
            .transpose()
    }

    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&session.token_hash.as_bytes()[..])
        .bind(session.user_id.as_str())
        .bind(&session.csrf_token)
        .bind(session.expires_at_ms)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_session(
        &self,
        token_hash: &SecretHash,
        now_ms: i64,
    ) -> Result<Option<(Session, User)>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, {SESSION_COLUMNS} FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&token_hash.as_bytes()[..])
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|r| Ok((rows::session(&r)?, rows::user(&r)?)))
            .transpose()
    }

    async fn delete_session(&self, token_hash: &SecretHash) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(&token_hash.as_bytes()[..])
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected()
            > 0)
    }

    async fn database_clock_ms(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(Some(row.try_get(0).map_err(backend)?))
    }

    async fn watch(&self, on_signal: &(dyn Fn(Signal) + Send + Sync)) -> Result<(), StoreError> {
        // A connection of its own (not from the pool): LISTEN holds it for as long as this runs.
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(backend)?;
        listener
            .listen_all([DUE_CHANNEL, REVOKED_CHANNEL, SETTINGS_CHANNEL])
            .await
            .map_err(backend)?;
        loop {
            // `try_recv` reconnects by itself after a lost connection and says so with `None`:
            // notifications sent in the gap are lost, so act as if each had come.
            match listener.try_recv().await.map_err(backend)? {
                Some(n) if n.channel() == REVOKED_CHANNEL => on_signal(Signal::Revoked),
                Some(n) if n.channel() == SETTINGS_CHANNEL => on_signal(Signal::SettingsChanged),
                // Its own ingest or results: whoever wrote them has woken this node already.
                Some(n) if self.due.is_own(n.payload()) => {}
                Some(_) => on_signal(Signal::Due),
                None => {
                    tracing::warn!("lost the LISTEN connection to PostgreSQL; reconnecting");
                    on_signal(Signal::Due);
                    on_signal(Signal::Revoked);
                    on_signal(Signal::SettingsChanged);
                }
            }
        }
    }

    async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        let account = Account {
            id: AccountId::generate(),
            name: name.to_owned(),
            created_at_ms: now_ms(),
        };
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(account.id.as_str())
            .bind(&account.name)
            .bind(account.created_at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(account)
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|r| rows::account(&r))
            .transpose()
    }

    async fn create_client(&self, new: NewApiClient) -> Result<ApiClient, StoreError> {
        let client = ApiClient {
            id: ClientId::generate(),
            account_id: new.account_id,
            name: new.name,
            scopes: new.scopes,
            secret_hash: new.secret_hash,
            created_at_ms: now_ms(),
            last_used_at_ms: None,
        };
        let mut tx = self.pool.begin().await.map_err(backend)?;
        ensure_account(&mut tx, &client.account_id).await?;
        sqlx::query(
            "INSERT INTO api_clients (id, account_id, name, scopes, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(client.id.as_str())
        .bind(client.account_id.as_str())
        .bind(&client.name)
        .bind(client.scopes.to_string())
        .bind(&client.secret_hash.as_bytes()[..])
        .bind(client.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(client)
    }

    async fn get_client(&self, id: &ClientId) -> Result<Option<ApiClient>, StoreError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM api_clients WHERE id = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|r| rows::client(&r))
            .transpose()
    }

    async fn list_clients(&self, account: &AccountId) -> Result<Vec<ApiClient>, StoreError> {
        let sql = format!(
            "SELECT {CLIENT_COLUMNS} FROM api_clients WHERE account_id = $1 ORDER BY created_at, id"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(rows::client)
            .collect()
    }

    async fn set_retention(
        &self,
        id: &AccountId,
        retention_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("UPDATE accounts SET retention_ms = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(retention_ms)
                .execute(&self.pool)
                .await
                .map_err(backend)?
                .rows_affected()
                > 0,
        )
    }

    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // As for one client: revocations are logged in commit order (see delete_client).
        sqlx::query("LOCK TABLE client_revocations IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let revoked = sqlx::query(
            "INSERT INTO client_revocations (client_id, revoked_at) \
             SELECT id, $2 FROM api_clients WHERE account_id = $1",
        )
        .bind(id.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // Clients, integration, users and sessions, messages, deliveries and attempts cascade.
        let deleted = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            > 0;
        if revoked > 0 {
            notify(&mut tx, REVOKED_CHANNEL).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(deleted)
    }

    async fn delete_client(&self, id: &ClientId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Deletions take turns, so the log's sequence numbers are in commit order and a node reading
        // "after N" can never miss an entry committed late with a smaller number.
        sqlx::query("LOCK TABLE client_revocations IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let deleted = sqlx::query("DELETE FROM api_clients WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            > 0;
        if deleted {
            sqlx::query("INSERT INTO client_revocations (client_id, revoked_at) VALUES ($1, $2)")
                .bind(id.as_str())
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            notify(&mut tx, REVOKED_CHANNEL).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(deleted)
    }

    async fn record_client_use(&self, id: &ClientId, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_clients SET last_used_at = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(at_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn revocations_after(&self, seq: i64) -> Result<Vec<Revocation>, StoreError> {
        sqlx::query("SELECT seq, client_id FROM client_revocations WHERE seq > $1 ORDER BY seq")
            .bind(seq)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(rows::revocation)
            .collect()
    }

    async fn settings_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM settings_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        row.try_get(0).map_err(backend)
    }

    async fn get_integration(
        &self,
        account: &AccountId,
    ) -> Result<Option<Integration>, StoreError> {
        let sql = format!("SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE account_id = $1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|row| rows::integration(&row, self.cipher.as_ref()))
            .transpose()
    }

    async fn put_integration(
        &self,
        account: &AccountId,
        update: IntegrationUpdate,
    ) -> Result<(Integration, bool), StoreError> {
        let now = now_ms();
        let requested = if update.disabled {
            IntegrationState::Disabled
        } else {
            IntegrationState::Enabled
        };
        let mut tx = self.pool.begin().await.map_err(backend)?;
        ensure_account(&mut tx, account).await?;
        // One upsert: a paused integration stays paused, subscriptions change only when given, and the
        // signing secret of an existing integration is never replaced. `version = 1` means created.
        let sql = format!(
            "INSERT INTO integrations (account_id, webhook_url, state, event_mask, signing_secret, \
                                       version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6) \
             ON CONFLICT (account_id) DO UPDATE SET \
                webhook_url = excluded.webhook_url, \
                state = CASE WHEN integrations.state = 'paused' THEN 'paused' ELSE excluded.state END, \
                event_mask = CASE WHEN $7 THEN excluded.event_mask ELSE integrations.event_mask END, \
                version = integrations.version + 1, \
                updated_at = excluded.updated_at \
             RETURNING {INTEGRATION_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(update.webhook_url.as_str())
            .bind(requested.as_str())
            .bind(update.events.unwrap_or_default().bits())
            .bind(seal(
                self.cipher.as_ref(),
                update.new_signing_secret.expose(),
                &secret_context(account),
            ))
            .bind(now)
            .bind(update.events.is_some())
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let integration = rows::integration(&row, self.cipher.as_ref())?;
        tx.commit().await.map_err(backend)?;
        let created = integration.version == 1;
        Ok((integration, created))
    }

    async fn remove_integration(&self, account: &AccountId) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("DELETE FROM integrations WHERE account_id = $1")
                .bind(account.as_str())
                .execute(&self.pool)
                .await
                .map_err(backend)?
                .rows_affected()
                > 0,
        )
    }

    async fn rotate_signing_secret(
        &self,
        account: &AccountId,
        new_secret: &SigningSecret,
        old_valid_until_ms: i64,
    ) -> Result<Option<Integration>, StoreError> {
        // The current secret moves, still sealed, to the previous-secret column (same context).
        let sql = format!(
            "UPDATE integrations SET previous_signing_secret = signing_secret, \
                    previous_secret_expires_at = $3, signing_secret = $2, \
                    version = version + 1, updated_at = $4 \
             WHERE account_id = $1 RETURNING {INTEGRATION_COLUMNS}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(seal(
                self.cipher.as_ref(),
                new_secret.expose(),
                &secret_context(account),
            ))
            .bind(old_valid_until_ms)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|row| rows::integration(&row, self.cipher.as_ref()))
            .transpose()
    }

    async fn change_subscription(
        &self,
        account: &AccountId,
        change: SubscriptionChange,
    ) -> Result<Option<Integration>, StoreError> {
        let (add, remove) = match change {
            SubscriptionChange::Subscribe(e) => (EventSet::of(e).bits(), 0),
            SubscriptionChange::Unsubscribe(e) => (0, EventSet::of(e).bits()),
        };
        // The new mask is computed in the database from the stored one, so two concurrent changes to
        // different events both survive. The version moves only when the set really changes.
        let sql = format!(
            "UPDATE integrations SET \
                version = version + CASE WHEN ((event_mask | $2) & ~$3) <> event_mask THEN 1 ELSE 0 END, \
                updated_at = CASE WHEN ((event_mask | $2) & ~$3) <> event_mask THEN $4 ELSE updated_at END, \
                event_mask = (event_mask | $2) & ~$3 \
             WHERE account_id = $1 \
             RETURNING {INTEGRATION_COLUMNS}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(add)
            .bind(remove)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|row| rows::integration(&row, self.cipher.as_ref()))
            .transpose()
    }

    async fn ingest_groups(
        &self,
        groups: &[&[NewMessage]],
        now_ms: i64,
    ) -> Result<Vec<Result<Vec<IngestOutcome>, StoreError>>, StoreError> {
        self.ingest_groups(groups, now_ms).await
    }

    fn ingest_writers(&self) -> usize {
        INGEST_WRITERS
    }

    async fn claim_due(
        &self,
        now_ms: i64,
        limit: u32,
        lease_ms: i64,
        shares: &Shares,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.claim(now_ms, limit, lease_ms, shares).await
    }

    async fn unclaim(
        &self,
        claimed: &[(DeliveryId, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.unclaim_all(claimed, now_ms).await
    }

    async fn complete(&self, finished: &[FinishedAttempt]) -> Result<Completed, StoreError> {
        self.complete_attempts(finished).await
    }

    async fn release_expired_leases(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.release_leases(now_ms, now_ms).await
    }

    async fn reclaim_all_leases(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.release_leases(i64::MAX, now_ms).await
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        self.earliest_due().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn write_probe(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('write_probe', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind("x".repeat(crate::PROBE_BYTES))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM settings WHERE key = 'write_probe'")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn queue_stats(&self, now_ms: i64) -> Result<QueueStats, StoreError> {
        self.stats(now_ms).await
    }

    async fn refresh_planner_statistics(&self) -> Result<Vec<String>, StoreError> {
        self.analyze_changed_tables().await
    }

    async fn record_test_attempt(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        body: &[u8],
        record: &AttemptRecord,
        succeeded: bool,
    ) -> Result<DeliveryId, StoreError> {
        self.log_test_attempt(account, message_id, body, record, succeeded)
            .await
    }

    async fn list_deliveries(
        &self,
        account: &AccountId,
        filter: &DeliveryFilter,
        before: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.deliveries_of(account, filter, before, limit).await
    }

    async fn resend(
        &self,
        account: &AccountId,
        id: &DeliveryId,
        now_ms: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        self.resend_delivery(account, id, now_ms).await
    }

    async fn prune(
        &self,
        cutoff_ms: i64,
        revocations_before_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.prune_old(cutoff_ms, revocations_before_ms, now_ms)
            .await
    }

    async fn pause_integration(
        &self,
        account: &AccountId,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.pause(account, reason, now_ms).await
    }

    async fn pause_failing_integrations(
        &self,
        failing_since_before: i64,
        now_ms: i64,
    ) -> Result<Vec<AccountId>, StoreError> {
        self.pause_failing(failing_since_before, now_ms).await
    }

    async fn resume_integration(
        &self,
        account: &AccountId,
        kept: KeptDeliveries,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.resume(account, kept, now_ms).await
    }

    async fn message_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT body FROM messages WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn resend_failed_since(
        &self,
        account: &AccountId,
        since_ms: i64,
        now_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // One resend of an account's failures at a time, across every node: under READ COMMITTED
        // two concurrent calls (two clicks, two nodes) would both find the same failed messages and
        // queue each twice. The second waits here, then its select sees the first's new deliveries.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('resend-failed:' || $1, 0))")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // Messages whose latest delivery (highest, time-ordered id) failed.
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT d.message_id, d.event FROM deliveries d \
             WHERE d.account_id = $1 AND d.status = 'failed' AND d.created_at >= $2 \
               AND d.event <> 'test' \
               AND NOT EXISTS (SELECT 1 FROM deliveries n \
                               WHERE n.message_id = d.message_id AND n.id > d.id) \
             ORDER BY d.id LIMIT $3",
        )
        .bind(account.as_str())
        .bind(since_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        for (message_id, event) in &due {
            sqlx::query(
                "INSERT INTO deliveries (id, message_id, account_id, event, status, \
                                         next_attempt_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5)",
            )
            .bind(DeliveryId::generate().as_str())
            .bind(message_id)
            .bind(account.as_str())
            .bind(event)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if !due.is_empty() {
            notify_due(&mut tx).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(due.len() as u64)
    }

    async fn attempt_buckets(
        &self,
        account: &AccountId,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<AttemptBucket>, StoreError> {
        let rows: Vec<(i64, i64, i64, f64, i64)> = sqlx::query_as(
            "SELECT (a.started_at / $3) * $3 AS bucket, COUNT(*), \
                    SUM(CASE WHEN a.status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END), \
                    CAST(AVG(a.duration_ms) AS DOUBLE PRECISION), MAX(a.duration_ms) \
             FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id \
             WHERE d.account_id = $1 AND a.started_at >= $2 \
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(account.as_str())
        .bind(since_ms)
        .bind(bucket_ms.max(1))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.into_iter().map(rows::attempt_bucket).collect())
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        self.delivery(id).await
    }

    async fn list_attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.attempts_of(id).await
    }

    async fn stored_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        sqlx::query(rows::STORED_SECRETS_SQL)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(rows::stored_secret)
            .collect()
    }

    async fn rewrite_secrets(&self, rewrites: &[SecretRewrite]) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for rewrite in rewrites {
            let (sql, key) = rows::rewrite_secret_sql(&rewrite.was.slot, true);
            let changed = sqlx::query(sql)
                .bind(&rewrite.now)
                .bind(key)
                .bind(&rewrite.was.stored)
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
            if changed != 1 {
                // Changed since it was read (a regeneration, say): write nothing; the caller reads
                // again.
                return Ok(false);
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        // Whichever node inserted first, every node reads the same row back.
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        row.try_get(0).map_err(backend)
    }
}
