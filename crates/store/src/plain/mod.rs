//! The SQL both dialects accept, written once: accounts, API clients, users and sessions,
//! integrations, secrets and the delivery log, implemented for [`SqlStore<B>`] whatever its
//! [`Backend`] — SQLite and PostgreSQL both take `$1`-style placeholders, `ON CONFLICT`,
//! `RETURNING` and the same column types.
//!
//! Where the two really differ, the backend says how through [`Backend`]'s few hooks: which pool
//! reads and which writes, how a write transaction starts (SQLite takes its write lock at once), the
//! locks PostgreSQL needs because its writers run side by side (SQLite's single writer gives the same
//! order for free), notifying other nodes, and scrubbing deleted secrets out of SQLite's file. The
//! delivery queue's statements are not here: they are where the dialects differ for speed, and each
//! backend writes its own (`sqlite/queue.rs`, `postgres/queue.rs`).

use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use sipsim_core::cipher::SecretCipher;
use sipsim_core::queue::AttemptRecord;
use sipsim_core::{AccountId, DeliveryId, StoreError};
use sqlx::pool::{Pool, PoolConnection};
use sqlx::{Database, SqlSafeStr, Transaction};

use crate::backend;
use crate::rotation::Rotation;
use crate::rows::Columns;

mod accounts;
mod exec;
mod integrations;
mod log;
mod notices;
mod users;

/// A value bound to a placeholder. The plain statements bind only these few kinds.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// Text (ids, names, URLs, sealed secrets).
    Text(&'a str),
    /// Text or NULL.
    OptText(Option<&'a str>),
    /// A 64-bit integer (times in Unix ms, counts, bit masks).
    Int(i64),
    /// An integer or NULL.
    OptInt(Option<i64>),
    /// Bytes (hashes, message bodies).
    Bytes(&'a [u8]),
    /// A boolean.
    Bool(bool),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

/// Runs one statement on a connection (or a transaction, through `&mut *tx`) with its arguments.
/// Implemented for SQLite's and PostgreSQL's connections in `exec.rs`.
#[async_trait]
pub trait Exec: Send {
    /// A row read back, read through [`Columns`].
    type Row: Columns + Send + Sync;

    /// Executes a statement; returns the rows it affected.
    async fn run<S: SqlSafeStr + Send>(
        &mut self,
        sql: S,
        args: &[Arg<'_>],
    ) -> Result<u64, sqlx::Error>;

    /// The first row of a query, if any.
    async fn optional<S: SqlSafeStr + Send>(
        &mut self,
        sql: S,
        args: &[Arg<'_>],
    ) -> Result<Option<Self::Row>, sqlx::Error>;

    /// Every row of a query.
    async fn all<S: SqlSafeStr + Send>(
        &mut self,
        sql: S,
        args: &[Arg<'_>],
    ) -> Result<Vec<Self::Row>, sqlx::Error>;
}

/// A database connection of backend `B`.
pub type Conn<B> = <<B as Backend>::Db as Database>::Connection;

/// A row as backend `B` reads it.
pub type RowOf<B> = <Conn<B> as Exec>::Row;

/// A write transaction of backend `B`.
pub type WriteTx<B> = Transaction<'static, <B as Backend>::Db>;

/// Work that must take turns across every writer. SQLite's writers always take turns (one write
/// lock, taken at `BEGIN IMMEDIATE`); PostgreSQL's run side by side and lock for these.
#[derive(Debug, Clone, Copy)]
pub enum Turn<'a> {
    /// Appending to the revocation log: sequence numbers must follow commit order, so that a node
    /// reading "after N" never misses an entry committed late with a smaller number.
    RevocationLog,
    /// Resending an account's failed messages: two concurrent calls (two clicks, two nodes) must
    /// not both find the same failures and queue each twice.
    ResendsOf(&'a AccountId),
}

/// A periodic job that one node at a time should run; a node finding another running it skips
/// its turn.
#[derive(Debug, Clone, Copy)]
pub enum Job {
    /// Pausing integrations that have failed for days.
    PauseFailing,
    /// Retention.
    Prune,
}

/// A change other nodes should hear of when the transaction commits.
#[derive(Debug, Clone, Copy)]
pub enum Notice {
    /// Deliveries became due.
    Due,
    /// An API client was deleted.
    Revoked,
}

/// What a database backend tells the plain statements. Public only in name (this module is
/// private), so that [`SqlStore`]'s impls may name it.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// sqlx's database type.
    type Db: Database<Connection: Exec>;

    /// The pool reads go to.
    fn reader(&self) -> &Pool<Self::Db>;

    /// The pool writes go to (and reads that must see the latest commit of any process): the
    /// read pool, unless the backend keeps a writer apart.
    fn writer(&self) -> &Pool<Self::Db> {
        self.reader()
    }

    /// Starts a write transaction.
    async fn begin_write(&self) -> Result<WriteTx<Self>, StoreError>;

    /// Makes `conn`'s transaction wait for the others doing the same `turn`, until it commits.
    async fn take_turn(conn: &mut Conn<Self>, turn: Turn<'_>) -> Result<(), StoreError>;

    /// Whether this node should run `job` now, inside `conn`'s transaction; `false` when another
    /// node is running it.
    async fn try_job(conn: &mut Conn<Self>, job: Job) -> Result<bool, StoreError>;

    /// Tells the other nodes of `notice` when `conn`'s transaction commits.
    async fn notify(conn: &mut Conn<Self>, notice: Notice) -> Result<(), StoreError>;

    /// Called after rows holding secrets or an account's data were deleted or rewritten, so that no
    /// old copy stays readable in the files; `rebuild` when rows were deleted.
    async fn scrub(&self, rebuild: bool) -> Result<(), StoreError>;
}

/// A store on an SQL database: the plain statements (this module) for every backend, and the
/// queue's per backend. `sipsim_store::SqliteStore` and `PgStore` are its two kinds. It reads as
/// its backend (`Deref`), where the backend's own fields (its pools) live.
#[derive(Debug, Clone)]
pub struct SqlStore<B> {
    db: B,
    /// Seals signing secrets at rest when the operator configured a key.
    pub(crate) cipher: Option<SecretCipher>,
    /// Where this node's last claim stopped among the accounts with due work.
    pub(crate) rotation: Arc<Rotation>,
}

impl<B> SqlStore<B> {
    /// A store on `db`, sealing no secrets.
    pub(crate) fn new(db: B) -> Self {
        SqlStore { db, cipher: None, rotation: Arc::default() }
    }

    /// Encrypts signing secrets at rest with `cipher` (and reads sealed ones back with it).
    pub fn with_cipher(mut self, cipher: Option<SecretCipher>) -> Self {
        self.cipher = cipher;
        self
    }
}

impl<B> Deref for SqlStore<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.db
    }
}

impl<B: Backend> SqlStore<B> {
    /// A connection from the read pool.
    async fn read(&self) -> Result<PoolConnection<B::Db>, StoreError> {
        self.reader().acquire().await.map_err(backend)
    }

    /// A connection from the write pool, for a single statement.
    async fn write(&self) -> Result<PoolConnection<B::Db>, StoreError> {
        self.writer().acquire().await.map_err(backend)
    }

    /// Runs one statement on the writer; returns the rows it affected.
    async fn write_run<S: SqlSafeStr + Send>(
        &self,
        sql: S,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        self.write().await?.run(sql, args).await.map_err(backend)
    }

    /// The row `sql` reads on `pool` (the reader, or the writer for an `UPDATE … RETURNING`), if
    /// any, through `read`.
    async fn one_row<T, S: SqlSafeStr + Send>(
        &self,
        pool: &Pool<B::Db>,
        sql: S,
        args: &[Arg<'_>],
        read: impl FnOnce(&RowOf<B>) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError> {
        let mut conn = pool.acquire().await.map_err(backend)?;
        let row = conn.optional(sql, args).await.map_err(backend)?;
        row.map(|r| read(&r)).transpose()
    }

    /// The row `sql` reads on the reader, if any, through `read`.
    async fn read_one<T, S: SqlSafeStr + Send>(
        &self,
        sql: S,
        args: &[Arg<'_>],
        read: impl FnOnce(&RowOf<B>) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError> {
        self.one_row(self.reader(), sql, args, read).await
    }

    /// Every row `sql` reads on the reader, through `read`.
    async fn all_rows<T, S: SqlSafeStr + Send>(
        &self,
        sql: S,
        args: &[Arg<'_>],
        read: impl FnMut(&RowOf<B>) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.read().await?.all(sql, args).await.map_err(backend)?;
        rows.iter().map(read).collect()
    }
}

/// Fails with [`StoreError::AccountNotFound`] unless `account` exists.
pub(crate) async fn ensure_account(
    conn: &mut impl Exec,
    account: &AccountId,
) -> Result<(), StoreError> {
    let exists = conn
        .optional("SELECT 1 FROM accounts WHERE id = $1", &[account.as_str().into()])
        .await
        .map_err(backend)?;
    match exists {
        Some(_) => Ok(()),
        None => Err(StoreError::AccountNotFound(account.clone())),
    }
}

/// Appends an attempt to the log (once per attempt number).
pub(crate) async fn insert_attempt(
    conn: &mut impl Exec,
    id: &DeliveryId,
    attempt: i64,
    record: &AttemptRecord,
) -> Result<(), StoreError> {
    conn.run(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, \
                                        status_code, error, response_snippet) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (delivery_id, attempt) DO NOTHING",
        &[
            id.as_str().into(),
            attempt.into(),
            record.started_at_ms.into(),
            record.duration_ms.into(),
            record.status_code.map(i64::from).into(),
            record.error.as_deref().into(),
            record.response_snippet.as_deref().into(),
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// Makes the head of each of `account`'s chains due at `now`, if it is waiting: the earliest
/// unfinished delivery of a key is the only one that may be sent. Called when a pause ends (a
/// completion releases its own chains by key).
pub(crate) async fn release_chain_heads(
    conn: &mut impl Exec,
    account: &AccountId,
    now: i64,
) -> Result<u64, StoreError> {
    conn.run(
        "UPDATE deliveries SET next_attempt_at = $2, updated_at = $2 \
         WHERE account_id = $1 AND ordering_key IS NOT NULL AND status = 'pending' \
           AND next_attempt_at IS NULL \
           AND seq = (SELECT MIN(x.seq) FROM deliveries x \
                      WHERE x.ordering_key IS NOT NULL \
                        AND x.account_id = deliveries.account_id \
                        AND x.ordering_key = deliveries.ordering_key \
                        AND x.status IN ('pending', 'delivering', 'paused'))",
        &[account.as_str().into(), now.into()],
    )
    .await
    .map_err(backend)
}

/// SQLite's plans of statements, on a freshly migrated database: what the tests that hold a query
/// to its indexes read.
#[cfg(test)]
pub(crate) struct Plans {
    conn: sqlx::SqliteConnection,
    _dir: tempfile::TempDir,
}

#[cfg(test)]
impl Plans {
    /// A new, migrated database to plan on.
    pub(crate) async fn new() -> Plans {
        use sqlx::Connection as _;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}/plan.db?mode=rwc", dir.path().display());
        let store = crate::SqliteStore::open(&url).await.expect("open");
        store.migrate().await.expect("migrate");
        let conn = sqlx::SqliteConnection::connect(&url).await.expect("connect");
        Plans { conn, _dir: dir }
    }

    /// The steps of `sql`'s plan (`SEARCH … USING INDEX …`, `SCAN …`), its parameters unbound.
    pub(crate) async fn of(&mut self, sql: &str) -> Vec<String> {
        use sqlx::Row as _;
        sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&mut self.conn)
            .await
            .expect("a plan")
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect()
    }
}
