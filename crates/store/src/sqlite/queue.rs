//! The delivery queue on SQLite: ingest, claim, complete, release expired leases.
//!
//! Every write runs on the single writer connection inside `BEGIN IMMEDIATE`, so a claim's
//! select-then-update cannot interleave with another writer, and a lease is committed before the
//! claimed deliveries are handed out.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use sipsim_core::queue::{
    ClaimedDelivery, Completed, Completion, DeliveryStatus, FinishedAttempt, IngestOutcome,
    NewMessage, Shares, TRAIN_LEN,
};
use sipsim_core::store::{DeliveryQueue, QueueStats};
use sipsim_core::{DeliveryId, StoreError};
use sqlx::{Acquire, AssertSqlSafe, Row};

use super::ingest::ingest_into;
use super::{ROWS_PER_STATEMENT, SqliteStore, rows_of};
use crate::backend;
use crate::plain::Backend as _;
use crate::rotation::{self, Rotation, Visited};
use crate::rows::{self, CLAIMED_COLUMNS, ClaimError, Failing};

#[async_trait]
impl DeliveryQueue for SqliteStore {
    /// Group commit: several independent batches in one transaction, each inside its own savepoint,
    /// so one batch failing (an unknown account) rolls back only that batch.
    async fn ingest_groups(
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

    async fn claim_due(
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
            self.rotation.advance(visited.iter().map(|v| &v.account), []);
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
            self.rotation.advance(visited.iter().map(|v| &v.account), []);
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
                    return Err(StoreError::SecretUnreadable(format!("delivery {id}: {why}")));
                }
                Err(ClaimError::Store(e)) => return Err(e),
            }
        }
        self.rotation
            .advance(visited.iter().map(|v| &v.account), out.iter().map(|c| &c.account_id));
        tx.commit().await.map_err(backend)?;
        Ok(out)
    }

    /// Group commit of attempt results: one transaction for all of them. Returns, for each, whether
    /// its lease still held, and how many chains moved on.
    async fn complete(&self, results: &[FinishedAttempt]) -> Result<Completed, StoreError> {
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
            failing.insert(account, Failing::after(before, r.completion, r.record.started_at_ms));
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
            released += query.execute(&mut *tx).await.map_err(backend)?.rows_affected();
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
                current.insert(row.try_get(0).map_err(backend)?, row.try_get(1).map_err(backend)?);
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
            sqlx::query(sql).bind(account).bind(at).execute(&mut *tx).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Completed { applied, released })
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
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

    async fn queue_stats(&self, now_ms: i64) -> Result<QueueStats, StoreError> {
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

    async fn unclaim(&self, claimed: &[(DeliveryId, String)], now: i64) -> Result<(), StoreError> {
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

    async fn release_expired_leases(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.release_leases(now_ms, now_ms).await
    }

    async fn reclaim_all_leases(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.release_leases(i64::MAX, now_ms).await
    }
}

impl SqliteStore {
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
}
