//! Ingest on SQLite: a batch of messages stored in a few statements, whatever it holds.

use std::collections::{HashMap, HashSet};

use sipsim_core::queue::{DeliveryStatus, IngestOutcome, NewMessage, SkipReason};
use sipsim_core::store::IntegrationState;
use sipsim_core::{DeliveryId, EventSet, MessageId, StoreError};
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Row};

use super::{ROWS_PER_STATEMENT, rows_of};
use crate::backend;
use crate::rows::{IDEMPOTENCY_WINDOW_MS, corrupt};

/// What ingest needs to know of an account's integration, read once per account per batch.
#[derive(Clone, Copy)]
enum Snapshot {
    None,
    Integration(IntegrationState, EventSet),
}

/// Stores one batch inside the caller's transaction (or savepoint), in a few statements whatever
/// it holds: what ingest must read (accounts, integrations, idempotency keys seen, each chain's
/// last number and unfinished count) is read once for the batch, the outcomes are decided in
/// memory in batch order, and the rows are written as multi-row inserts. The write lock the
/// transaction holds makes a chain's numbers and the commit order the same.
pub(super) async fn ingest_into(
    conn: &mut SqliteConnection,
    batch: &[&NewMessage],
    now: i64,
) -> Result<Vec<IngestOutcome>, StoreError> {
    let mut accounts: Vec<&str> = batch.iter().map(|m| m.account_id.as_str()).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut known: HashSet<String> = HashSet::with_capacity(accounts.len());
    let mut snapshots: HashMap<String, Snapshot> = HashMap::with_capacity(accounts.len());
    for chunk in accounts.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT a.id, i.state, i.event_mask FROM accounts a \
             LEFT JOIN integrations i ON i.account_id = a.id WHERE a.id IN ({})",
            rows_of("?", chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for account in chunk {
            query = query.bind(*account);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(backend)? {
            let id: String = row.try_get(0).map_err(backend)?;
            let state: Option<String> = row.try_get(1).map_err(backend)?;
            if let Some(state) = state {
                let parsed = IntegrationState::parse(&state).ok_or_else(|| corrupt(&state))?;
                let events = EventSet::from_bits_truncate(row.try_get(2).map_err(backend)?);
                snapshots.insert(id.clone(), Snapshot::Integration(parsed, events));
            }
            known.insert(id);
        }
    }
    // Every account must exist: the first unknown one fails the batch.
    if let Some(unknown) = batch.iter().find(|m| !known.contains(m.account_id.as_str())) {
        return Err(StoreError::AccountNotFound(unknown.account_id.clone()));
    }

    // Idempotency keys seen in the window, and each chain's last number and unfinished count.
    let mut first_with_key: HashMap<(String, String), MessageId> = HashMap::new();
    let keyed: Vec<(&str, &str)> = batch
        .iter()
        .filter_map(|m| Some((m.account_id.as_str(), m.idempotency_key.as_deref()?)))
        .collect();
    for chunk in keyed.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH w(account_id, key) AS (VALUES {}) \
             SELECT k.account_id, k.key, k.message_id FROM w CROSS JOIN idempotency_keys k \
             WHERE k.account_id = w.account_id AND k.key = w.key AND k.created_at > ?",
            rows_of("(?, ?)", chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (account, key) in chunk {
            query = query.bind(*account).bind(*key);
        }
        for row in
            query.bind(now - IDEMPOTENCY_WINDOW_MS).fetch_all(&mut *conn).await.map_err(backend)?
        {
            let id: String = row.try_get(2).map_err(backend)?;
            first_with_key.insert(
                (row.try_get(0).map_err(backend)?, row.try_get(1).map_err(backend)?),
                MessageId::parse(&id).map_err(corrupt)?,
            );
        }
    }
    let mut chained: Vec<(&str, &str)> = batch
        .iter()
        .filter_map(|m| Some((m.account_id.as_str(), m.ordering_key.as_deref()?)))
        .collect();
    chained.sort_unstable();
    chained.dedup();
    let mut chains: HashMap<(String, String), (i64, i64)> = HashMap::with_capacity(chained.len());
    for chunk in chained.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "WITH c(account_id, ordering_key) AS (VALUES {}) \
             SELECT d.account_id, d.ordering_key, MAX(d.seq), \
                    COUNT(CASE WHEN d.status IN ('pending', 'delivering', 'paused') THEN 1 END) \
             FROM c CROSS JOIN deliveries d \
             WHERE d.ordering_key IS NOT NULL AND d.account_id = c.account_id \
               AND d.ordering_key = c.ordering_key \
             GROUP BY d.account_id, d.ordering_key",
            rows_of("(?, ?)", chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (account, key) in chunk {
            query = query.bind(*account).bind(*key);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(backend)? {
            chains.insert(
                (row.try_get(0).map_err(backend)?, row.try_get(1).map_err(backend)?),
                (row.try_get(2).map_err(backend)?, row.try_get(3).map_err(backend)?),
            );
        }
    }

    let mut rows = NewRows::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for &msg in batch {
        let account = msg.account_id.as_str();
        let idempotency = msg.idempotency_key.as_ref().map(|k| (account.to_owned(), k.clone()));
        if let Some(first) = idempotency.as_ref().and_then(|k| first_with_key.get(k)) {
            outcomes.push(IngestOutcome::Duplicate { message_id: first.clone() });
            continue;
        }
        let message_id = MessageId::generate();
        rows.messages.push((message_id.clone(), msg));
        if let Some(k) = idempotency {
            rows.keys.push((msg, message_id.clone()));
            first_with_key.insert(k, message_id.clone());
        }
        let status = match snapshots.get(account).copied().unwrap_or(Snapshot::None) {
            Snapshot::None => Err(SkipReason::NoIntegration),
            Snapshot::Integration(IntegrationState::Disabled, _) => Err(SkipReason::Disabled),
            Snapshot::Integration(_, events) if !events.contains(msg.event) => {
                Err(SkipReason::NotSubscribed)
            }
            Snapshot::Integration(IntegrationState::Paused, _) => Ok(DeliveryStatus::Paused),
            Snapshot::Integration(IntegrationState::Enabled, _) => Ok(DeliveryStatus::Pending),
        };
        match status {
            Err(reason) => outcomes.push(IngestOutcome::Skipped { message_id, reason }),
            Ok(status) => {
                let delivery_id = DeliveryId::generate();
                // In a chain, the next number; behind an unfinished delivery it waits (no due
                // time) until that one ends.
                let (seq, waits) = match &msg.ordering_key {
                    None => (None, false),
                    Some(key) => {
                        let chain = chains.entry((account.to_owned(), key.clone())).or_default();
                        chain.0 += 1;
                        let waits = chain.1 > 0;
                        chain.1 += 1;
                        (Some(chain.0), waits)
                    }
                };
                rows.deliveries.push(NewDelivery {
                    id: delivery_id.clone(),
                    message_id: message_id.clone(),
                    msg,
                    status,
                    due: (!waits).then_some(now),
                    seq,
                });
                outcomes.push(IngestOutcome::Enqueued { message_id, delivery_id });
            }
        }
    }
    rows.write(conn, now).await?;
    Ok(outcomes)
}

/// A delivery to insert.
struct NewDelivery<'a> {
    id: DeliveryId,
    message_id: MessageId,
    msg: &'a NewMessage,
    status: DeliveryStatus,
    due: Option<i64>,
    seq: Option<i64>,
}

/// The rows one batch inserts.
#[derive(Default)]
struct NewRows<'a> {
    messages: Vec<(MessageId, &'a NewMessage)>,
    keys: Vec<(&'a NewMessage, MessageId)>,
    deliveries: Vec<NewDelivery<'a>>,
}

impl NewRows<'_> {
    /// Writes the rows, messages before their deliveries, a chunk per statement.
    async fn write(&self, conn: &mut SqliteConnection, now: i64) -> Result<(), StoreError> {
        for chunk in self.messages.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO messages (id, account_id, event, body, ordering_key, created_at) \
                 VALUES {}",
                rows_of("(?, ?, ?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (id, msg) in chunk {
                query = query
                    .bind(id.as_str())
                    .bind(msg.account_id.as_str())
                    .bind(msg.event.name())
                    .bind(&msg.body)
                    .bind(msg.ordering_key.as_deref())
                    .bind(now);
            }
            query.execute(&mut *conn).await.map_err(backend)?;
        }
        for chunk in self.keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO idempotency_keys (account_id, key, message_id, created_at) \
                 VALUES {} ON CONFLICT (account_id, key) DO UPDATE SET \
                    message_id = excluded.message_id, created_at = excluded.created_at",
                rows_of("(?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (msg, id) in chunk {
                query = query
                    .bind(msg.account_id.as_str())
                    .bind(msg.idempotency_key.as_deref())
                    .bind(id.as_str())
                    .bind(now);
            }
            query.execute(&mut *conn).await.map_err(backend)?;
        }
        for chunk in self.deliveries.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO deliveries (id, message_id, account_id, event, status, \
                                         next_attempt_at, ordering_key, seq, created_at, updated_at) \
                 VALUES {}",
                rows_of("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for d in chunk {
                query = query
                    .bind(d.id.as_str())
                    .bind(d.message_id.as_str())
                    .bind(d.msg.account_id.as_str())
                    .bind(d.msg.event.name())
                    .bind(d.status.as_str())
                    .bind(d.due)
                    .bind(d.msg.ordering_key.as_deref())
                    .bind(d.seq)
                    .bind(now)
                    .bind(now);
            }
            query.execute(&mut *conn).await.map_err(backend)?;
        }
        Ok(())
    }
}
