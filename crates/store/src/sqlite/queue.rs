//! The delivery queue on SQLite: ingest, claim, complete, release expired leases.
//!
//! Every write runs on the single writer connection inside `BEGIN IMMEDIATE`, so a claim's
//! select-then-update cannot interleave with another writer, and a lease is committed before the
//! claimed deliveries are handed out.

use std::collections::{BTreeMap, HashMap, HashSet};

use sipsim_core::queue::{
    AttemptRecord, ClaimedDelivery, Completed, Completion, DeliveryFilter, DeliveryRecord,
    DeliveryStatus, FinishedAttempt, IngestOutcome, NewMessage, Shares, SkipReason, TRAIN_LEN,
};
use sipsim_core::store::{IntegrationState, KeptDeliveries, QueueStats};
use sipsim_core::{AccountId, DeliveryId, EventSet, MessageId, StoreError};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Acquire, AssertSqlSafe, Row};

use super::{SqliteStore, ensure_account};
use crate::backend;
use crate::rotation::{self, Rotation, Visited};
use crate::rows::{
    self, ATTEMPT_COLUMNS, CLAIMED_COLUMNS, ClaimError, DELIVERY_COLUMNS, Failing,
    IDEMPOTENCY_WINDOW_MS, corrupt,
};

/// Rows bound into one multi-row statement (at most 10 values each: far below SQLite's 32,766).
const ROWS_PER_STATEMENT: usize = 128;

/// `row` repeated `n` times, comma-separated: the placeholders of a multi-row statement. Only
/// placeholders are ever spliced into SQL; every value is bound.
fn rows_of(row: &str, n: usize) -> String {
    vec![row; n].join(", ")
}

/// What ingest needs to know of an account's integration, read once per account per batch.
#[derive(Clone, Copy)]
enum Snapshot {
    None,
    Integration(IntegrationState, EventSet),
}

impl SqliteStore {
    /// Group commit: several independent batches in one transaction, each inside its own savepoint,
    /// so one batch failing (an unknown account) rolls back only that batch.
    pub(super) async fn ingest_groups(
        &self,
        groups: &[&[NewMessage]],
        now: i64,
    ) -> Result<Vec<Result<Vec<IngestOutcome>, StoreError>>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut results = Vec::with_capacity(groups.len());
        // Usually every batch is good: then they are written as one (a few statements in all,
        // where each batch took as many), which gives the same outcomes as one after the other.
        // If that fails, each batch is written on its own, so only a bad one fails.
        if groups.len() > 1 {
            let all: Vec<&NewMessage> = groups.iter().flat_map(|g| g.iter()).collect();
            let mut savepoint = (&mut *tx).begin().await.map_err(backend)?;
            match ingest_into(&mut savepoint, &all, now).await {
                Ok(outcomes) => {
                    savepoint.commit().await.map_err(backend)?;
                    let mut outcomes = outcomes.into_iter();
                    for group in groups {
                        results.push(Ok(outcomes.by_ref().take(group.len()).collect()));
                    }
                }
                Err(e @ StoreError::StorageFull(_)) => return Err(e),
                Err(_) => savepoint.rollback().await.map_err(backend)?,
            }
        }
        for group in groups.iter().skip(results.len()) {
            let group: Vec<&NewMessage> = group.iter().collect();
            let mut savepoint = (&mut *tx).begin().await.map_err(backend)?;
            match ingest_into(&mut savepoint, &group, now).await {
                Ok(outcomes) => {
                    savepoint.commit().await.map_err(backend)?;
                    results.push(Ok(outcomes));
                }
                // No room: SQLite may have rolled the whole transaction back already, and no
                // other batch would fit either. Dropping the transaction rolls back what is left.
                Err(e @ StoreError::StorageFull(_)) => return Err(e),
                Err(e) => {
                    savepoint.rollback().await.map_err(backend)?;
                    results.push(Err(e));
                }
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(results)
    }

    pub(super) async fn claim(
        &self,
        now: i64,
        limit: u32,
        lease_ms: i64,
        shares: &Shares,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token = rows::lease_token();
        // The visit only chooses where to look, so it reads outside the write transaction, off
        // the single writer's path (a visit of a hundred accounts takes about a millisecond); the
        // update below checks again that each row is pending, due and its integration enabled.
        let visited = sqlx::query(AssertSqlSafe(rotation::visit_sql()))
            .bind(self.rotation.last())
            .bind(rotation::accounts_to_visit(shares, limit))
            .fetch_all(&self.read)
            .await
            .map_err(backend)?
            .iter()
            .map(Visited::read)
            .collect::<Result<Vec<_>, _>>()?;
        let allotted = Rotation::shares(&visited, shares, now, limit);
        if allotted.is_empty() {
            self.rotation
                .advance(visited.iter().map(|v| &v.account), []);
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        // Each account's share, oldest due first, one index range each, in visiting order until
        // `limit`: one statement per account, the same text each time (so prepared once per
        // connection; SQLite runs it in-process, so there is no round trip to save by joining
        // them into one compound statement, whose text changed with the number of accounts and
        // was prepared anew on most claims).
        let mut left = limit;
        for (account, n) in &allotted {
            if left == 0 {
                break;
            }
            let got = sqlx::query(
                "UPDATE deliveries SET status = 'delivering', lease_token = ?1, \
                        lease_expires_at = ?2, attempts = attempts + 1, updated_at = ?3 \
                 WHERE id IN ( \
                    SELECT id FROM deliveries INDEXED BY deliveries_due_by_account \
                    WHERE account_id = ?4 AND status = 'pending' \
                      AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?3 \
                      AND EXISTS (SELECT 1 FROM integrations i \
                                  WHERE i.account_id = ?4 AND i.state = 'enabled') \
                    ORDER BY next_attempt_at LIMIT ?5)",
            )
            .bind(&token)
            .bind(now + lease_ms)
            .bind(now)
            .bind(account.as_str())
            .bind(i64::from((*n).min(left)))
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
            left = left.saturating_sub(u32::try_from(got).unwrap_or(u32::MAX));
        }
        if left == limit {
            self.rotation
                .advance(visited.iter().map(|v| &v.account), []);
            tx.commit().await.map_err(backend)?;
            return Ok(Vec::new());
        }
        // Behind each claimed head of a chain, the deliveries waiting right behind it (a train):
        // while the head is unfinished nothing else of its chain is due or leased, so every waiting
        // one with a higher number is behind it, in order.
        sqlx::query(
            "UPDATE deliveries SET status = 'delivering', lease_token = ?1, lease_expires_at = ?2, \
                    attempts = attempts + 1, updated_at = ?3 \
             WHERE id IN ( \
                SELECT f.id FROM deliveries h CROSS JOIN deliveries f \
                WHERE h.lease_token = ?1 AND h.ordering_key IS NOT NULL \
                  AND f.ordering_key IS NOT NULL AND f.account_id = h.account_id \
                  AND f.ordering_key = h.ordering_key AND f.seq > h.seq AND f.seq < h.seq + ?4 \
                  AND f.status = 'pending' AND f.next_attempt_at IS NULL)",
        )
        .bind(&token)
        .bind(now + lease_ms)
        .bind(now)
        .bind(TRAIN_LEN)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CLAIMED_COLUMNS} FROM deliveries d \
             JOIN messages m ON m.id = d.message_id \
             JOIN integrations i ON i.account_id = d.account_id \
             WHERE d.lease_token = ?1"
        )))
        .bind(&token)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            match rows::claimed(row, &token, self.cipher.as_ref(), now) {
                Ok(c) => out.push(c),
                // A secret this node cannot open (wrong or missing SIPSIM_ENCRYPTION_KEY): the
                // transaction is dropped, so every delivery of this claim is handed back untouched
                // for a node that can, and the dispatcher stops claiming. Never marked failed.
                Err(ClaimError::Secret(id, why)) => {
                    return Err(StoreError::SecretUnreadable(format!(
                        "delivery {id}: {why}"
                    )));
                }
                Err(ClaimError::Store(e)) => return Err(e),
            }
        }
        self.rotation.advance(
            visited.iter().map(|v| &v.account),
            out.iter().map(|c| &c.account_id),
        );
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    /// Group commit of attempt results: one transaction for all of them. Returns, for each, whether
    /// its lease still held, and how many chains moved on.
    pub(super) async fn complete_attempts(
        &self,
        results: &[FinishedAttempt],
    ) -> Result<Completed, StoreError> {
        let mut tx = self.begin_write().await?;
        // One statement per chunk ends every lease that still holds and records its outcome: each
        // statement is a round trip to SQLite's thread, which cost more than the work itself when
        // it was three per attempt.
        let mut held: HashMap<String, (i64, String, Option<String>)> =
            HashMap::with_capacity(results.len());
        for chunk in results.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH i(id, token, status, next_at, code, error, at) AS (VALUES {}) \
                 UPDATE deliveries SET status = i.status, next_attempt_at = i.next_at, \
                        lease_token = NULL, lease_expires_at = NULL, last_status_code = i.code, \
                        last_error = i.error, updated_at = i.at \
                 FROM i WHERE deliveries.id = i.id AND deliveries.lease_token = i.token \
                   AND deliveries.status = 'delivering' \
                 RETURNING deliveries.id, deliveries.attempts, deliveries.account_id, \
                           deliveries.ordering_key",
                rows_of("(?, ?, ?, ?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                let (status, next) = match r.completion {
                    Completion::Succeeded => (DeliveryStatus::Succeeded, None),
                    Completion::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
                    Completion::Failed => (DeliveryStatus::Failed, None),
                    Completion::Paused => (DeliveryStatus::Paused, None),
                };
                query = query
                    .bind(r.id.as_str())
                    .bind(&r.lease_token)
                    .bind(status.as_str())
                    .bind(next)
                    .bind(r.record.status_code.map(i64::from))
                    .bind(r.record.error.as_deref())
                    .bind(r.record.started_at_ms + r.record.duration_ms);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(backend)? {
                held.insert(
                    row.try_get(0).map_err(backend)?,
                    (
                        row.try_get(1).map_err(backend)?,
                        row.try_get(2).map_err(backend)?,
                        row.try_get(3).map_err(backend)?,
                    ),
                );
            }
        }

        // The attempt log, the chains to move on, and how each integration's failure clock moves.
        let mut logged: Vec<(&FinishedAttempt, i64)> = Vec::with_capacity(held.len());
        let mut chains: Vec<(&str, &str, i64)> = Vec::new();
        let mut failing: BTreeMap<&str, Failing> = BTreeMap::new();
        let mut applied = Vec::with_capacity(results.len());
        for r in results {
            let Some((attempt, account, key)) = held.get(r.id.as_str()) else {
                applied.push(false);
                continue;
            };
            applied.push(true);
            logged.push((r, *attempt));
            let ended = r.record.started_at_ms + r.record.duration_ms;
            if let (Some(key), Completion::Succeeded | Completion::Failed) = (key, r.completion) {
                chains.push((account, key, ended));
            }
            let before = failing.remove(account.as_str());
            failing.insert(
                account,
                Failing::after(before, r.completion, r.record.started_at_ms),
            );
        }
        for chunk in logged.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, \
                                                status_code, error, response_snippet) \
                 VALUES {} ON CONFLICT (delivery_id, attempt) DO NOTHING",
                rows_of("(?, ?, ?, ?, ?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (r, attempt) in chunk {
                let rec = &r.record;
                query = query
                    .bind(r.id.as_str())
                    .bind(*attempt)
                    .bind(rec.started_at_ms)
                    .bind(rec.duration_ms)
                    .bind(rec.status_code.map(i64::from))
                    .bind(rec.error.as_deref())
                    .bind(rec.response_snippet.as_deref());
            }
            query.execute(&mut *tx).await.map_err(backend)?;
        }
        // A train's members end in one batch: each chain is released once, after its last.
        let mut ended: HashMap<(&str, &str), i64> = HashMap::with_capacity(chains.len());
        for (account, key, at) in chains {
            let latest = ended.entry((account, key)).or_insert(at);
            *latest = (*latest).max(at);
        }
        let ended: Vec<((&str, &str), i64)> = ended.into_iter().collect();
        let mut released = 0;
        for chunk in ended.chunks(ROWS_PER_STATEMENT) {
            // Each chain looked up by its key (an index search). The unary `+` keeps the planner
            // off the due index, whose NULL range is every waiting delivery of every call: SQLite
            // 3.51 chose it, and the release cost 200 µs a delivery with 80,000 waiting.
            let sql = format!(
                "WITH c(account_id, ordering_key, at) AS (VALUES {}) \
                 UPDATE deliveries SET next_attempt_at = c.at, updated_at = c.at FROM c \
                 WHERE deliveries.ordering_key IS NOT NULL \
                   AND deliveries.account_id = c.account_id \
                   AND deliveries.ordering_key = c.ordering_key \
                   AND +deliveries.status = 'pending' AND +deliveries.next_attempt_at IS NULL \
                   AND deliveries.seq = (SELECT MIN(x.seq) FROM deliveries x \
                                         WHERE x.ordering_key IS NOT NULL \
                                           AND x.account_id = deliveries.account_id \
                                           AND x.ordering_key = deliveries.ordering_key \
                                           AND x.status IN ('pending', 'delivering', 'paused'))",
                rows_of("(?, ?, ?)", chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for ((account, key), at) in chunk {
                query = query.bind(*account).bind(*key).bind(*at);
            }
            released += query
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        // Integrations are written only where the clock really moves (rarely: at the first failure
        // after a success and the first success after failures).
        let accounts: Vec<&str> = failing.keys().copied().collect();
        let mut current: HashMap<String, Option<i64>> = HashMap::with_capacity(accounts.len());
        for chunk in accounts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT account_id, failing_since FROM integrations WHERE account_id IN ({})",
                rows_of("?", chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for account in chunk {
                query = query.bind(*account);
            }
            for row in query.fetch_all(&mut *tx).await.map_err(backend)? {
                current.insert(
                    row.try_get(0).map_err(backend)?,
                    row.try_get(1).map_err(backend)?,
                );
            }
        }
        for (account, track) in failing {
            let Some(now) = current.get(account) else {
                continue;
            };
            let (sql, at) = match track {
                Failing::Since(at) if at != *now => (
                    "UPDATE integrations SET failing_since = ?2 \
                     WHERE account_id = ?1 AND failing_since IS NOT ?2",
                    at,
                ),
                Failing::SinceIfUnset(at) if now.is_none() => (
                    "UPDATE integrations SET failing_since = ?2 \
                     WHERE account_id = ?1 AND failing_since IS NULL",
                    Some(at),
                ),
                _ => continue,
            };
            sqlx::query(sql)
                .bind(account)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Completed { applied, released })
    }

    pub(super) async fn log_test_attempt(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        body: &[u8],
        record: &AttemptRecord,
        succeeded: bool,
    ) -> Result<DeliveryId, StoreError> {
        let delivery_id = DeliveryId::generate();
        let status = if succeeded {
            DeliveryStatus::Succeeded
        } else {
            DeliveryStatus::Failed
        };
        let mut tx = self.begin_write().await?;
        ensure_account(&mut tx, account).await?;
        sqlx::query(
            "INSERT INTO messages (id, account_id, event, body, ordering_key, created_at) \
             VALUES (?1, ?2, 'test', ?3, NULL, ?4)",
        )
        .bind(message_id.as_str())
        .bind(account.as_str())
        .bind(body)
        .bind(record.started_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO deliveries (id, message_id, account_id, event, status, attempts, \
                                     last_status_code, last_error, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'test', ?4, 1, ?5, ?6, ?7, ?7)",
        )
        .bind(delivery_id.as_str())
        .bind(message_id.as_str())
        .bind(account.as_str())
        .bind(status.as_str())
        .bind(record.status_code.map(i64::from))
        .bind(record.error.as_deref())
        .bind(record.started_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        insert_attempt(&mut tx, &delivery_id, 1, record).await?;
        tx.commit().await.map_err(backend)?;
        Ok(delivery_id)
    }

    pub(super) async fn prune_old(
        &self,
        cutoff: i64,
        revocations_before: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        // Deliveries and their attempts go with their message (ON DELETE CASCADE). Paused deliveries
        // are kept for the retention period only, as DESIGN.md says; pending and in-flight ones stay.
        // The oldest a message of any account may be: the default, or the shortest override.
        let shortest: Option<i64> =
            sqlx::query("SELECT MIN(retention_ms) FROM accounts WHERE retention_ms IS NOT NULL")
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?
                .try_get(0)
                .map_err(backend)?;
        let bound = shortest.map_or(cutoff, |ms| cutoff.max(now - ms));
        let messages = sqlx::query(
            "DELETE FROM messages WHERE created_at < ?1 \
             AND created_at < COALESCE((SELECT ?3 - a.retention_ms FROM accounts a \
                                        WHERE a.id = messages.account_id), ?2) \
             AND NOT EXISTS ( \
                SELECT 1 FROM deliveries d WHERE d.message_id = messages.id \
                AND d.status IN ('pending', 'delivering'))",
        )
        .bind(bound)
        .bind(cutoff)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at <= ?1")
            .bind(now - IDEMPOTENCY_WINDOW_MS)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("DELETE FROM client_revocations WHERE revoked_at < ?1")
            .bind(revocations_before)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(messages)
    }

    pub(super) async fn pause(
        &self,
        account: &AccountId,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE integrations SET state = 'paused', paused_reason = ?2, version = version + 1, \
                    updated_at = ?3 \
             WHERE account_id = ?1 AND state = 'enabled'",
        )
        .bind(account.as_str())
        .bind(reason)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(backend)?
        .rows_affected()
            > 0)
    }

    pub(super) async fn pause_failing(
        &self,
        failing_since_before: i64,
        now: i64,
    ) -> Result<Vec<AccountId>, StoreError> {
        sqlx::query(
            "UPDATE integrations SET state = 'paused', version = version + 1, updated_at = ?2, \
                    paused_reason = 'every delivery attempt has failed for the whole pause period' \
             WHERE state = 'enabled' AND failing_since IS NOT NULL AND failing_since <= ?1 \
             RETURNING account_id",
        )
        .bind(failing_since_before)
        .bind(now)
        .fetch_all(&self.write)
        .await
        .map_err(backend)?
        .iter()
        .map(|row| {
            let id: String = row.try_get(0).map_err(backend)?;
            AccountId::parse(&id).map_err(corrupt)
        })
        .collect()
    }

    pub(super) async fn resume(
        &self,
        account: &AccountId,
        kept: KeptDeliveries,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let resumed = sqlx::query(
            "UPDATE integrations SET state = 'enabled', paused_reason = NULL, failing_since = NULL, \
                    version = version + 1, updated_at = ?2 \
             WHERE account_id = ?1 AND state = 'paused'",
        )
        .bind(account.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if resumed == 0 {
            tx.commit().await.map_err(backend)?;
            return Ok(None);
        }
        let sql = match kept {
            // Kept deliveries of a chain wait for their turn; the chains' heads are released below.
            KeptDeliveries::Deliver => {
                "UPDATE deliveries SET status = 'pending', updated_at = ?2, \
                        next_attempt_at = CASE WHEN ordering_key IS NULL THEN ?2 ELSE NULL END \
                 WHERE account_id = ?1 AND status = 'paused'"
            }
            KeptDeliveries::Drop => {
                "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, updated_at = ?2, \
                        last_error = 'dropped when the paused integration was resumed' \
                 WHERE account_id = ?1 AND status = 'paused'"
            }
        };
        let affected = sqlx::query(sql)
            .bind(account.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        release_chain_heads(&mut tx, account.as_str(), now).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(affected))
    }

    /// Makes deliveries whose lease expires at or before `expired_by` due at `now`.
    pub(super) async fn release_leases(
        &self,
        expired_by: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        // A train's deliveries expire together: only each chain's earliest is made due, the others
        // wait behind it again.
        Ok(sqlx::query(AssertSqlSafe(format!(
            "UPDATE deliveries SET status = 'pending', lease_token = NULL, lease_expires_at = NULL, \
                    updated_at = ?2, next_attempt_at = {} \
             WHERE status = 'delivering' AND lease_expires_at <= ?1",
            rows::due_unless_waiting("?2", "?2")
        )))
        .bind(expired_by)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(backend)?
        .rows_affected())
    }

    pub(super) async fn earliest_due(&self) -> Result<Option<i64>, StoreError> {
        // In due order from the first due time, never through the deliveries waiting behind their
        // call's earlier events (no due time: NULL sorts first in the index).
        let row = sqlx::query(
            "SELECT d.next_attempt_at FROM deliveries d \
             JOIN integrations i ON i.account_id = d.account_id \
             WHERE d.status = 'pending' AND d.next_attempt_at IS NOT NULL AND i.state = 'enabled' \
             ORDER BY d.next_attempt_at LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        row.map(|r| r.try_get(0)).transpose().map_err(backend)
    }

    pub(super) async fn stats(&self, now_ms: i64) -> Result<QueueStats, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM deliveries WHERE status = 'pending'), \
               (SELECT COUNT(*) FROM deliveries d JOIN integrations i ON i.account_id = d.account_id \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND i.state = 'enabled'), \
               (SELECT MIN(d.next_attempt_at) FROM deliveries d \
                 JOIN integrations i ON i.account_id = d.account_id \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND i.state = 'enabled'), \
               (SELECT COUNT(*) FROM deliveries WHERE status = 'delivering'), \
               (SELECT COUNT(*) FROM integrations WHERE state = 'paused')",
        )
        .bind(now_ms)
        .fetch_one(&self.read)
        .await
        .map_err(backend)?;
        rows::queue_stats(&row)
    }

    pub(super) async fn unclaim_all(
        &self,
        claimed: &[(DeliveryId, String)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // A head keeps its due time; a train's first unsent delivery, now its chain's earliest
        // unfinished one, is due at once, and the ones behind it wait again.
        let sql = format!(
            "UPDATE deliveries SET status = 'pending', attempts = attempts - 1, \
                    lease_token = NULL, lease_expires_at = NULL, next_attempt_at = {} \
             WHERE id = ?1 AND lease_token = ?2 AND status = 'delivering'",
            rows::due_unless_waiting("next_attempt_at", "COALESCE(next_attempt_at, ?3)")
        );
        for (id, token) in claimed {
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id.as_str())
                .bind(token)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    pub(super) async fn deliveries_of(
        &self,
        account: &AccountId,
        filter: &DeliveryFilter,
        before: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        // Only fixed fragments are spliced in; every value is bound.
        let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE account_id = ?1");
        if before.is_some() {
            sql.push_str(" AND id < ?2");
        }
        if filter.status.is_some() {
            sql.push_str(" AND status = ?3");
        }
        if filter.event.is_some() {
            sql.push_str(" AND event = ?4");
        }
        if filter.since_ms.is_some() {
            sql.push_str(" AND created_at >= ?5");
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?6");
        sqlx::query(AssertSqlSafe(sql))
            .bind(account.as_str())
            .bind(before.map(|b| b.as_str().to_owned()))
            .bind(filter.status.map(|s| s.as_str()))
            .bind(filter.event.map(|e| e.name()))
            .bind(filter.since_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(backend)?
            .iter()
            .map(rows::delivery)
            .collect()
    }

    pub(super) async fn resend_delivery(
        &self,
        account: &AccountId,
        id: &DeliveryId,
        now: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let original = sqlx::query(
            "SELECT message_id, event FROM deliveries WHERE id = ?1 AND account_id = ?2",
        )
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let Some(row) = original else {
            return Ok(None);
        };
        let message_id: String = row.try_get(0).map_err(backend)?;
        let event: String = row.try_get(1).map_err(backend)?;
        let new_id = DeliveryId::generate();
        sqlx::query(
            "INSERT INTO deliveries (id, message_id, account_id, event, status, next_attempt_at, \
                                     created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
        )
        .bind(new_id.as_str())
        .bind(&message_id)
        .bind(account.as_str())
        .bind(&event)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1");
        let created = sqlx::query(AssertSqlSafe(sql))
            .bind(new_id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let record = rows::delivery(&created)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(record))
    }

    pub(super) async fn delivery(
        &self,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?;
        row.map(|r| rows::delivery(&r)).transpose()
    }

    pub(super) async fn attempts_of(
        &self,
        id: &DeliveryId,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        sqlx::query(
            AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempt"
        )),
        )
        .bind(id.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(backend)?
        .iter()
        .map(rows::attempt)
        .collect()
    }
}

/// Stores one batch inside the caller's transaction (or savepoint), in a few statements whatever
/// it holds: what ingest must read (accounts, integrations, idempotency keys seen, each chain's
/// last number and unfinished count) is read once for the batch, the outcomes are decided in
/// memory in batch order, and the rows are written as multi-row inserts. The write lock the
/// transaction holds makes a chain's numbers and the commit order the same.
async fn ingest_into(
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
    if let Some(unknown) = batch
        .iter()
        .find(|m| !known.contains(m.account_id.as_str()))
    {
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
        for row in query
            .bind(now - IDEMPOTENCY_WINDOW_MS)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?
        {
            let id: String = row.try_get(2).map_err(backend)?;
            first_with_key.insert(
                (
                    row.try_get(0).map_err(backend)?,
                    row.try_get(1).map_err(backend)?,
                ),
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
                (
                    row.try_get(0).map_err(backend)?,
                    row.try_get(1).map_err(backend)?,
                ),
                (
                    row.try_get(2).map_err(backend)?,
                    row.try_get(3).map_err(backend)?,
                ),
            );
        }
    }

    let mut rows = NewRows::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for &msg in batch {
        let account = msg.account_id.as_str();
        let idempotency = msg
            .idempotency_key
            .as_ref()
            .map(|k| (account.to_owned(), k.clone()));
        if let Some(first) = idempotency.as_ref().and_then(|k| first_with_key.get(k)) {
            outcomes.push(IngestOutcome::Duplicate {
                message_id: first.clone(),
            });
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
                outcomes.push(IngestOutcome::Enqueued {
                    message_id,
                    delivery_id,
                });
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

/// Makes the head of each of `account`'s chains due at `now`, if it is waiting: the earliest
/// unfinished delivery of a key is the only one that may be sent. Called when a pause ends (a
/// completion releases its own chain by key).
async fn release_chain_heads(
    conn: &mut SqliteConnection,
    account: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE deliveries SET next_attempt_at = ?2, updated_at = ?2 \
         WHERE account_id = ?1 AND ordering_key IS NOT NULL AND status = 'pending' \
           AND next_attempt_at IS NULL \
           AND seq = (SELECT MIN(x.seq) FROM deliveries x \
                      WHERE x.ordering_key IS NOT NULL \
                        AND x.account_id = deliveries.account_id \
                        AND x.ordering_key = deliveries.ordering_key \
                        AND x.status IN ('pending', 'delivering', 'paused'))",
    )
    .bind(account)
    .bind(now)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Appends an attempt to the log (once per attempt number).
async fn insert_attempt(
    conn: &mut SqliteConnection,
    id: &DeliveryId,
    attempt: i64,
    record: &AttemptRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, duration_ms, \
                                        status_code, error, response_snippet) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (delivery_id, attempt) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(attempt)
    .bind(record.started_at_ms)
    .bind(record.duration_ms)
    .bind(record.status_code.map(i64::from))
    .bind(record.error.as_deref())
    .bind(record.response_snippet.as_deref())
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}
