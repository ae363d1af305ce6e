//! Waking the other nodes after ingest, outside the ingest transaction.
//!
//! A transaction that has called `NOTIFY` takes a lock every notifying transaction shares, at
//! commit, and holds it through the commit's WAL flush, so that notifications arrive in commit
//! order. Ingest commits synchronously (an accepted event is on disk), so with the notification
//! inside it every concurrent ingest and attempt result queued behind one fsync after another.
//! Ingest therefore commits without notifying; [`DueSignal::raise`] then asks a task to send one
//! notification in a transaction of its own that does not wait for the flush (a notification is not
//! durable anyway). Raises that arrive while one is being sent, or within [`SPACING`] of it, are
//! folded into the next, so a busy node sends at most a hundred a second.
//!
//! This node's own dispatcher is woken in the process by whoever ingested or recorded results, so
//! [`PgStore::watch`](super::PgStore) ignores the notifications that carry this store's tag: those
//! sent here, and those of `sipsim_record` (released chains), which reads it from the connection.

use std::time::Duration;

use sqlx::postgres::PgPool;
use tokio::sync::mpsc;

use super::DUE_CHANNEL;

/// Least time between two notifications of one node: at most 100 a second, one transaction
/// each, however many ingests commit.
const SPACING: Duration = Duration::from_millis(10);

/// Sets the node's tag on a connection (the setting `sipsim.node`, which the functions of migration
/// 0009 put on their notifications).
pub(super) const SET_TAG: &str = "SELECT set_config('sipsim.node', $1, false)";

/// A new node's tag: random, so that two nodes, or two stores in one process, never share one.
pub(super) fn node_tag() -> String {
    format!("{:016x}", u64::from_ne_bytes(sipsim_core::random::bytes::<8>()))
}

/// The sending side; the task ends when the last clone of its store is dropped.
#[derive(Clone, Debug)]
pub(super) struct DueSignal {
    wanted: mpsc::Sender<()>,
    /// This store's payload on [`DUE_CHANNEL`], telling its own notifications apart.
    tag: String,
}

impl DueSignal {
    /// Starts the sending task on `pool` (call within a Tokio runtime).
    pub(super) fn spawn(pool: PgPool, tag: String) -> Self {
        // One slot: a raise while one is already waiting is the same raise.
        let (wanted, mut raised) = mpsc::channel(1);
        let payload = tag.clone();
        tokio::spawn(async move {
            while raised.recv().await.is_some() {
                let sent = sqlx::query(
                    "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)",
                )
                .bind(DUE_CHANNEL)
                .bind(&payload)
                .execute(&pool)
                .await;
                if let Err(e) = sent {
                    // The deliveries are stored: the other nodes find them by their fallback poll.
                    tracing::warn!(error = %e, "could not wake the other nodes");
                }
                // Raises meanwhile wait for the next one: the other nodes are needed only when this
                // one has more work than slots, and then a few milliseconds do not matter.
                tokio::time::sleep(SPACING).await;
            }
        });
        DueSignal { wanted, tag }
    }

    /// Wakes the other nodes' dispatchers soon (after the caller's commit).
    pub(super) fn raise(&self) {
        // Full: a notification is already due to be sent, and it will cover this one too.
        let _ = self.wanted.try_send(());
    }

    /// Whether a notification's payload says this store sent it.
    pub(super) fn is_own(&self, payload: &str) -> bool {
        payload == self.tag
    }
}
