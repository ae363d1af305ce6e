//! The PostgreSQL backend: for production and for several `sipsimd` nodes on one database
//! (`postgres://…`).
//!
//! The same tables and semantics as SQLite, plus what many nodes need: claims take rows with
//! `FOR UPDATE SKIP LOCKED` (two nodes never claim one delivery), a per-key advisory lock makes a
//! call's sequence numbers follow commit order, writes that make work due `NOTIFY` the other nodes
//! ([`Store::watch`]; ingest right after its commit, `signal.rs`), periodic jobs take a try-lock so
//! one node runs each at a time, and migrations run under sqlx's advisory lock so nodes can start
//! together.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sipsim_core::StoreError;
use sipsim_core::store::{Cluster, Signal};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection as _, Row};

use crate::plain::{self, Backend, Notice, SqlStore, Turn, WriteTx};
use crate::{backend, migrate_error};

mod queue;
mod signal;

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
pub(crate) const INGEST_WRITERS: usize = 4;

/// A PostgreSQL database holding all of sipsim-webhooks' state, shared by any number of nodes:
/// the plain statements are `crate::plain`'s, the queue's are in `queue.rs`.
pub type PgStore = SqlStore<PgDb>;

/// Every role: what a node holds (`Arc<dyn Store>`).
impl sipsim_core::Store for PgStore {}

/// What [`PgStore`] holds: a pool, and what lets the node tell others of its writes.
#[derive(Clone, Debug)]
pub struct PgDb {
    pool: PgPool,
    /// Wakes the other nodes after an ingest commit.
    due: signal::DueSignal,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db?…`) with a pool of
    /// at most `max_connections`. Does not migrate: call [`PgStore::migrate`].
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(backend)?.application_name("sipsimd");
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
                    sqlx::query(signal::SET_TAG).bind(tag).execute(conn).await.map(drop)
                })
            })
            .connect_with(options)
            .await
            .map_err(backend)?;
        Ok(SqlStore::new(PgDb { due: signal::DueSignal::spawn(pool.clone(), tag), pool }))
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

/// The migrator over PostgreSQL's embedded migrations.
pub(crate) fn migrator() -> Migrator {
    crate::migrations::migrator(crate::migrations::POSTGRES)
}

/// Queues a wake-up of every node's dispatcher, sent when the surrounding transaction commits
/// (PostgreSQL folds repeats within one transaction into one).
async fn notify_due(conn: &mut PgConnection) -> Result<(), StoreError> {
    notify(conn, DUE_CHANNEL).await
}

/// Queues a notification on `channel`, sent when the surrounding transaction commits.
async fn notify(conn: &mut PgConnection, channel: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(conn).await.map_err(backend)?;
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

#[async_trait]
impl Backend for PgDb {
    type Db = sqlx::Postgres;

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<WriteTx<Self>, StoreError> {
        self.pool.begin().await.map_err(backend)
    }

    async fn take_turn(conn: &mut PgConnection, turn: Turn<'_>) -> Result<(), StoreError> {
        match turn {
            // Deletions take turns, so the log's sequence numbers are in commit order.
            Turn::RevocationLog => {
                sqlx::query("LOCK TABLE client_revocations IN SHARE ROW EXCLUSIVE MODE")
                    .execute(conn)
                    .await
            }
            // Under READ COMMITTED the second resend waits here, then sees the first's deliveries.
            Turn::ResendsOf(account) => {
                sqlx::query(
                    "SELECT pg_advisory_xact_lock(hashtextextended('resend-failed:' || $1, 0))",
                )
                .bind(account.as_str())
                .execute(conn)
                .await
            }
        }
        .map_err(backend)?;
        Ok(())
    }

    async fn try_job(conn: &mut PgConnection, job: plain::Job) -> Result<bool, StoreError> {
        job_lock(
            conn,
            match job {
                plain::Job::PauseFailing => Job::PauseFailing,
                plain::Job::Prune => Job::Prune,
            },
        )
        .await
    }

    async fn notify(conn: &mut PgConnection, notice: Notice) -> Result<(), StoreError> {
        match notice {
            Notice::Due => notify_due(conn).await,
            Notice::Revoked => notify(conn, REVOKED_CHANNEL).await,
        }
    }

    /// PostgreSQL's own VACUUM (autovacuum) reclaims dead rows.
    async fn scrub(&self, _: bool) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Cluster for PgStore {
    async fn database_clock_ms(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(Some(row.try_get(0).map_err(backend)?))
    }

    async fn watch(&self, on_signal: &(dyn Fn(Signal) + Send + Sync)) -> Result<(), StoreError> {
        // A connection of its own (not from the pool): LISTEN holds it for as long as this runs.
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(backend)?;
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
}
