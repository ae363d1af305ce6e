//! The SQLite backend: the embedded default (`sqlite://sipsim.db`).
//!
//! WAL mode with `synchronous=NORMAL`: a committed write survives a `kill -9` of the process at any
//! instant (the WAL is in the OS page cache); surviving power loss as well needs `synchronous=FULL`.
//! Writes go through a pool of exactly one connection, so this process never contends with itself for
//! SQLite's single write lock; multi-statement writes use `BEGIN IMMEDIATE` so that another process
//! (an operator command) makes them wait instead of failing half-way. Reads use a separate pool.

use std::borrow::Cow;
use std::path::PathBuf;
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
    KeptDeliveries, NewApiClient, QueueStats, Revocation, Session, SubscriptionChange, User,
};
use sipsim_core::{
    AccountId, ClientId, DeliveryId, EventSet, MessageId, Store, StoreError, UserId,
};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr as _};

use crate::rotation::Rotation;
use crate::rows::{
    self, CLIENT_COLUMNS, INTEGRATION_COLUMNS, SESSION_COLUMNS, USER_COLUMNS, secret_context,
};
use crate::{backend, migrate_error};

mod queue;

/// The SQLite migrations, embedded at compile time (no sqlx macros needed).
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts clients integrations",
        include_str!("../../migrations/sqlite/0001_accounts_clients_integrations.sql"),
    ),
    (
        2,
        "delivery queue",
        include_str!("../../migrations/sqlite/0002_delivery_queue.sql"),
    ),
    (
        3,
        "deliveries by account and id",
        include_str!("../../migrations/sqlite/0003_deliveries_by_account_id.sql"),
    ),
    (
        4,
        "pause",
        include_str!("../../migrations/sqlite/0004_pause.sql"),
    ),
    (
        5,
        "ordering",
        include_str!("../../migrations/sqlite/0005_ordering.sql"),
    ),
    (
        6,
        "users and sessions",
        include_str!("../../migrations/sqlite/0006_users_sessions.sql"),
    ),
    (
        7,
        "secret rotation",
        include_str!("../../migrations/sqlite/0007_secret_rotation.sql"),
    ),
    (
        8,
        "account retention",
        include_str!("../../migrations/sqlite/0008_account_retention.sql"),
    ),
    (
        9,
        "settings version",
        include_str!("../../migrations/sqlite/0009_settings_version.sql"),
    ),
    (
        10,
        "due index without waiting",
        include_str!("../../migrations/sqlite/0010_due_index_without_waiting.sql"),
    ),
    (
        11,
        "due by account",
        include_str!("../../migrations/sqlite/0011_due_by_account.sql"),
    ),
];

/// The writer's page cache, as SQLite's `cache_size` takes a size in KiB (negative): 4 MiB, twice
/// SQLite's default, so that a group commit spills fewer of its pages before it commits. 16 MiB
/// bought no more ingest speed measurably and cost peak memory (docs/BENCHMARKS.md).
const WRITER_CACHE_KIB: i64 = -4 * 1024;

/// A SQLite database holding all of sipsim-webhooks' state.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    path: Option<PathBuf>,
    /// Seals signing secrets at rest when the operator configured a key.
    cipher: Option<SecretCipher>,
    /// Where the last claim stopped among the accounts with due work.
    rotation: Arc<Rotation>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`, `sqlite:path` or
    /// `sqlite::memory:`). Does not migrate: call [`SqliteStore::migrate`].
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        SqliteStore::open_capped(url, None).await
    }

    /// [`SqliteStore::open`], with the database file not allowed to grow past `max_bytes`
    /// (SQLite's `max_page_count`): writes beyond fail with [`StoreError::StorageFull`] until
    /// space is freed inside it, as on a full disk.
    pub async fn open_capped(url: &str, max_bytes: Option<u64>) -> Result<Self, StoreError> {
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(bytes) = max_bytes {
            // New databases use SQLite's default page size, 4 KiB.
            options = options.pragma("max_page_count", (bytes / 4096).max(1).to_string());
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let path = (!in_memory).then(|| options.get_filename().to_path_buf());
        if let Some(path) = &path {
            create_private(path)?;
        }
        // The writer's statement journals (every multi-row insert in a transaction keeps one) stay
        // in memory instead of spilling to a temporary file past 64 KiB, and its page cache is
        // larger than SQLite's default.
        let writer_options = options
            .clone()
            .pragma("temp_store", "memory")
            .pragma("cache_size", WRITER_CACHE_KIB.to_string());
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .after_release(close_if_still_in_a_transaction)
            .connect_with(writer_options)
            .await
            .map_err(backend)?;
        // An in-memory database exists only inside its one connection, so it reads there too.
        let read = if in_memory {
            write.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await
                .map_err(backend)?
        };
        Ok(SqliteStore {
            read,
            write,
            path,
            cipher: None,
            rotation: Arc::default(),
        })
    }

    /// Encrypts signing secrets at rest with `cipher` (and reads sealed ones back with it).
    pub fn with_cipher(mut self, cipher: Option<SecretCipher>) -> Self {
        self.cipher = cipher;
        self
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
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
            .run(&self.write)
            .await
            .map_err(migrate_error)
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Writes a consistent copy of the database, as of one moment, to the new file `target`
    /// (created `0600`; it must not exist). Safe while a server runs on the database and writes to
    /// it: SQLite's `VACUUM INTO` reads one snapshot (the WAL included) and blocks no writer. The
    /// copy is compact and self-contained; sealed secrets stay sealed.
    pub async fn backup_to(&self, target: &std::path::Path) -> Result<(), StoreError> {
        #[cfg(unix)]
        let created = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(target)
        };
        #[cfg(not(unix))]
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target);
        created.map_err(|e| StoreError::Backend(Box::new(e)))?;
        let path = target.to_string_lossy().into_owned();
        let copied = sqlx::query("VACUUM INTO ?1")
            .bind(&path)
            .execute(&self.write)
            .await
            .map_err(backend);
        if copied.is_err() {
            // Leave no half-written copy that could be mistaken for a backup.
            let _ = std::fs::remove_file(target);
        }
        copied.map(|_| ())
    }

    /// Closes both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Leaves no old copy of rewritten or deleted rows in the files: erased means erased, and a
    /// secret encrypted in place must not stay readable beside its ciphertext. Deleted rows, and
    /// copies SQLite left in the unused space of pages it reorganised, stay in the file until it is
    /// rebuilt: `rebuild` runs VACUUM for that (blocking writers meanwhile: seconds per GB; account
    /// deletions and key changes are rare). The write-ahead log still holds pages as they were: it
    /// is copied into the database and emptied (readers in progress may keep part of it until the
    /// next checkpoint). PostgreSQL's own VACUUM (autovacuum) reclaims dead rows there.
    async fn scrub(&self, rebuild: bool) -> Result<(), StoreError> {
        if rebuild {
            sqlx::query("VACUUM")
                .execute(&self.write)
                .await
                .map_err(backend)?;
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Starts a write transaction that takes SQLite's write lock at once, so a concurrent writer in
    /// another process makes it wait (busy timeout) instead of failing it half-way.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

/// Runs when the writer's connection comes back to its pool: closes it (the pool opens a fresh one)
/// if it is still inside a transaction.
///
/// That happens after a failed write: when a statement or the COMMIT fails for want of space
/// (`SQLITE_FULL`) or an I/O error, SQLite may roll the transaction back by itself; sqlx's
/// ROLLBACK, sent when the transaction is dropped, then fails ("no transaction is active") and
/// sqlx goes on counting the connection as inside a transaction, so every later `BEGIN` failed
/// with "attempted to call begin_with at non-zero transaction depth" — the writer was wedged for
/// good, even after space was freed.
fn close_if_still_in_a_transaction(
    conn: &mut sqlx::SqliteConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        use sqlx::Connection as _;
        // After a commit the connection is out of its transaction already: no round trip to
        // SQLite's thread on that path. Only a dropped transaction (its ROLLBACK queued) waits.
        if !conn.is_in_transaction() {
            return Ok(true);
        }
        conn.ping().await?;
        if conn.is_in_transaction() {
            tracing::warn!(
                "the database writer's transaction could not be rolled back; reconnecting"
            );
            return Ok(false);
        }
        Ok(true)
    })
}

/// Creates the database file readable and writable by its owner only (`0600`) if it does not exist
/// yet: it holds payloads (phone numbers, transcripts) and secrets. SQLite gives the `-wal` and
/// `-shm` files it creates beside it the same permissions. An existing file keeps its mode (the
/// operator chose it), with a warning if others may read it.
pub(crate) fn create_private(path: &std::path::Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Ok(meta) = std::fs::metadata(path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format!("{:o}", meta.permissions().mode() & 0o777),
                        "the database file may be read by other users; `chmod 600` it (and its -wal and -shm files)"
                    );
                }
            }
            Err(e) => return Err(StoreError::Backend(Box::new(e))),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Fails with [`StoreError::AccountNotFound`] unless `account` exists, inside `tx`.
async fn ensure_account(
    conn: &mut sqlx::SqliteConnection,
    account: &AccountId,
) -> Result<(), StoreError> {
    let exists = sqlx::query("SELECT 1 FROM accounts WHERE id = ?1")
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
impl Store for SqliteStore {
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
        let mut tx = self.begin_write().await?;
        ensure_account(&mut tx, account).await?;
        sqlx::query(
            "INSERT INTO users (id, account_id, email, password_hash, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
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
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = ?1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(email.trim().to_lowercase())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?
            .map(|r| rows::user(&r))
            .transpose()
    }

    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&session.token_hash.as_bytes()[..])
        .bind(session.user_id.as_str())
        .bind(&session.csrf_token)
        .bind(session.expires_at_ms)
        .execute(&self.write)
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
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1 AND s.expires_at > ?2"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&token_hash.as_bytes()[..])
            .bind(now_ms)
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?
            .map(|r| Ok((rows::session(&r)?, rows::user(&r)?)))
            .transpose()
    }

    async fn delete_session(&self, token_hash: &SecretHash) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE token_hash = ?1")
            .bind(&token_hash.as_bytes()[..])
            .execute(&self.write)
            .await
            .map_err(backend)?
            .rows_affected()
            > 0)
    }

    fn single_node(&self) -> bool {
        true
    }

    async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        let account = Account {
            id: AccountId::generate(),
            name: name.to_owned(),
            created_at_ms: now_ms(),
        };
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES (?1, ?2, ?3)")
            .bind(account.id.as_str())
            .bind(&account.name)
            .bind(account.created_at_ms)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(account)
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = ?1")
            .bind(id.as_str())
            .fetch_optional(&self.read)
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
        let mut tx = self.begin_write().await?;
        ensure_account(&mut tx, &client.account_id).await?;
        sqlx::query(
            "INSERT INTO api_clients (id, account_id, name, scopes, secret_hash, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
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
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM api_clients WHERE id = ?1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?
            .map(|r| rows::client(&r))
            .transpose()
    }

    async fn list_clients(&self, account: &AccountId) -> Result<Vec<ApiClient>, StoreError> {
        let sql = format!(
            "SELECT {CLIENT_COLUMNS} FROM api_clients WHERE account_id = ?1 ORDER BY created_at, id"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .fetch_all(&self.read)
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
            sqlx::query("UPDATE accounts SET retention_ms = ?2 WHERE id = ?1")
                .bind(id.as_str())
                .bind(retention_ms)
                .execute(&self.write)
                .await
                .map_err(backend)?
                .rows_affected()
                > 0,
        )
    }

    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO client_revocations (client_id, revoked_at) \
             SELECT id, ?2 FROM api_clients WHERE account_id = ?1",
        )
        .bind(id.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM idempotency_keys WHERE account_id = ?1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        // Clients, integration, users and sessions, messages, deliveries and attempts cascade.
        let deleted = sqlx::query("DELETE FROM accounts WHERE id = ?1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            > 0;
        tx.commit().await.map_err(backend)?;
        self.scrub(deleted).await?;
        Ok(deleted)
    }

    async fn delete_client(&self, id: &ClientId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM api_clients WHERE id = ?1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            > 0;
        if deleted {
            sqlx::query("INSERT INTO client_revocations (client_id, revoked_at) VALUES (?1, ?2)")
                .bind(id.as_str())
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(deleted)
    }

    async fn record_client_use(&self, id: &ClientId, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_clients SET last_used_at = ?2 WHERE id = ?1")
            .bind(id.as_str())
            .bind(at_ms)
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn revocations_after(&self, seq: i64) -> Result<Vec<Revocation>, StoreError> {
        sqlx::query("SELECT seq, client_id FROM client_revocations WHERE seq > ?1 ORDER BY seq")
            .bind(seq)
            .fetch_all(&self.read)
            .await
            .map_err(backend)?
            .iter()
            .map(rows::revocation)
            .collect()
    }

    async fn settings_version(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT version FROM settings_version WHERE id = 1")
            .fetch_one(&self.read)
            .await
            .map_err(backend)?;
        row.try_get(0).map_err(backend)
    }

    async fn get_integration(
        &self,
        account: &AccountId,
    ) -> Result<Option<Integration>, StoreError> {
        let sql = format!("SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE account_id = ?1");
        sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .fetch_optional(&self.read)
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
        let mut tx = self.begin_write().await?;
        ensure_account(&mut tx, account).await?;
        // One upsert: a paused integration stays paused, subscriptions change only when given, and the
        // signing secret of an existing integration is never replaced. `version = 1` means created.
        let sql = format!(
            "INSERT INTO integrations (account_id, webhook_url, state, event_mask, signing_secret, \
                                       version, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6) \
             ON CONFLICT (account_id) DO UPDATE SET \
                webhook_url = excluded.webhook_url, \
                state = CASE WHEN integrations.state = 'paused' THEN 'paused' ELSE excluded.state END, \
                event_mask = CASE WHEN ?7 THEN excluded.event_mask ELSE integrations.event_mask END, \
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
            sqlx::query("DELETE FROM integrations WHERE account_id = ?1")
                .bind(account.as_str())
                .execute(&self.write)
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
                    previous_secret_expires_at = ?3, signing_secret = ?2, \
                    version = version + 1, updated_at = ?4 \
             WHERE account_id = ?1 RETURNING {INTEGRATION_COLUMNS}"
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
            .fetch_optional(&self.write)
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
                version = version + CASE WHEN ((event_mask | ?2) & ~?3) <> event_mask THEN 1 ELSE 0 END, \
                updated_at = CASE WHEN ((event_mask | ?2) & ~?3) <> event_mask THEN ?4 ELSE updated_at END, \
                event_mask = (event_mask | ?2) & ~?3 \
             WHERE account_id = ?1 \
             RETURNING {INTEGRATION_COLUMNS}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(add)
            .bind(remove)
            .bind(now_ms())
            .fetch_optional(&self.write)
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
            .execute(&self.read)
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn write_probe(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('write_probe', ?1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind("x".repeat(crate::PROBE_BYTES))
        .execute(&self.write)
        .await
        .map_err(backend)?;
        sqlx::query("DELETE FROM settings WHERE key = 'write_probe'")
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn queue_stats(&self, now_ms: i64) -> Result<QueueStats, StoreError> {
        self.stats(now_ms).await
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
        sqlx::query_scalar("SELECT body FROM messages WHERE id = ?1")
            .bind(id.as_str())
            .fetch_optional(&self.read)
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
        // BEGIN IMMEDIATE: concurrent calls run one after another, each seeing the last's deliveries.
        let mut tx = self.begin_write().await?;
        // Messages whose latest delivery (highest, time-ordered id) failed.
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT d.message_id, d.event FROM deliveries d \
             WHERE d.account_id = ?1 AND d.status = 'failed' AND d.created_at >= ?2 \
               AND d.event <> 'test' \
               AND NOT EXISTS (SELECT 1 FROM deliveries n \
                               WHERE n.message_id = d.message_id AND n.id > d.id) \
             ORDER BY d.id LIMIT ?3",
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
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
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
            "SELECT (a.started_at / ?3) * ?3 AS bucket, COUNT(*), \
                    SUM(CASE WHEN a.status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END), \
                    CAST(AVG(a.duration_ms) AS DOUBLE PRECISION), MAX(a.duration_ms) \
             FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id \
             WHERE d.account_id = ?1 AND a.started_at >= ?2 \
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(account.as_str())
        .bind(since_ms)
        .bind(bucket_ms.max(1))
        .fetch_all(&self.read)
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
            .fetch_all(&self.read)
            .await
            .map_err(backend)?
            .iter()
            .map(rows::stored_secret)
            .collect()
    }

    async fn rewrite_secrets(&self, rewrites: &[SecretRewrite]) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        for rewrite in rewrites {
            let (sql, key) = rows::rewrite_secret_sql(&rewrite.was.slot, false);
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
        // The secrets' earlier forms (in clear, or under the old key) must not stay in the file.
        self.scrub(true).await?;
        Ok(true)
    }

    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(candidate)
        .execute(&self.write)
        .await
        .map_err(backend)?;
        // Read on the writer: the read pool might not see a row another process just committed until
        // its next transaction, and this runs once at start.
        let row = sqlx::query("SELECT value FROM settings WHERE key = ?1")
            .bind(key)
            .fetch_one(&self.write)
            .await
            .map_err(backend)?;
        row.try_get(0).map_err(backend)
    }
}
