//! The SQLite backend: the embedded default (`sqlite://sipsim.db`).
//!
//! WAL mode with `synchronous=NORMAL`: a committed write survives a `kill -9` of the process at any
//! instant (the WAL is in the OS page cache); surviving power loss as well needs `synchronous=FULL`.
//! Writes go through a pool of exactly one connection, so this process never contends with itself for
//! SQLite's single write lock; multi-statement writes use `BEGIN IMMEDIATE` so that another process
//! (an operator command) makes them wait instead of failing half-way. Reads use a separate pool.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sipsim_core::StoreError;
use sipsim_core::store::Cluster;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::plain::{Backend, Job, Notice, SqlStore, Turn, WriteTx};
use crate::{backend, migrate_error};

mod ingest;
mod queue;

/// Rows bound into one multi-row statement (at most 10 values each: far below SQLite's 32,766).
pub(super) const ROWS_PER_STATEMENT: usize = 128;

/// `row` repeated `n` times, comma-separated: the placeholders of a multi-row statement. Only
/// placeholders are ever spliced into SQL; every value is bound.
pub(super) fn rows_of(row: &str, n: usize) -> String {
    vec![row; n].join(", ")
}

/// The writer's page cache, as SQLite's `cache_size` takes a size in KiB (negative): 4 MiB, twice
/// SQLite's default, so that a group commit spills fewer of its pages before it commits. 16 MiB
/// bought no more ingest speed measurably and cost peak memory (docs/BENCHMARKS.md).
const WRITER_CACHE_KIB: i64 = -4 * 1024;

/// A SQLite database holding all of sipsim-webhooks' state: the plain statements are
/// `crate::plain`'s, the queue's are in `queue.rs`.
pub type SqliteStore = SqlStore<SqliteDb>;

/// Every role: what a node holds (`Arc<dyn Store>`).
impl sipsim_core::Store for SqliteStore {}

/// What [`SqliteStore`] holds: a writer of one connection, a read pool, and the file.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    read: SqlitePool,
    write: SqlitePool,
    path: Option<PathBuf>,
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
        Ok(SqlStore::new(SqliteDb { read, write, path }))
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrations::migrator(crate::migrations::SQLITE)
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
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(target)
        };
        #[cfg(not(unix))]
        let created = std::fs::OpenOptions::new().write(true).create_new(true).open(target);
        created.map_err(|e| StoreError::Backend(Box::new(e)))?;
        let path = target.to_string_lossy().into_owned();
        let copied =
            sqlx::query("VACUUM INTO ?1").bind(&path).execute(&self.write).await.map_err(backend);
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
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
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

#[async_trait]
impl Backend for SqliteDb {
    type Db = sqlx::Sqlite;

    fn reader(&self) -> &SqlitePool {
        &self.read
    }

    fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// Takes SQLite's write lock at once, so a concurrent writer in another process makes it wait
    /// (busy timeout) instead of failing it half-way. Writers therefore take turns: every [`Turn`]
    /// is taken already.
    async fn begin_write(&self) -> Result<WriteTx<Self>, StoreError> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(backend)
    }

    async fn take_turn(_: &mut SqliteConnection, _: Turn<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    /// One node: every job is this node's.
    async fn try_job(_: &mut SqliteConnection, _: Job) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// No other node to tell: this node's writers wake its dispatcher directly.
    async fn notify(_: &mut SqliteConnection, _: Notice) -> Result<(), StoreError> {
        Ok(())
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
            sqlx::query("VACUUM").execute(&self.write).await.map_err(backend)?;
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl Cluster for SqliteStore {
    fn single_node(&self) -> bool {
        true
    }
}
