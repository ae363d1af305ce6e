//! The delivery log as users read it (deliveries, attempts, bodies, the 24-hour chart), what
//! they do with it (resend, the test event), and retention.

use async_trait::async_trait;
use sipsim_core::payload::keys_of_call;
use sipsim_core::queue::{AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus};
use sipsim_core::store::{AttemptBucket, DeliveryLog};
use sipsim_core::{AccountId, DeliveryId, MessageId, StoreError};
use sqlx::AssertSqlSafe;

use super::{Backend, Exec, Job, Notice, SqlStore, Turn, WriteTx, ensure_account, insert_attempt};
use crate::backend;
use crate::rows::{
    self, ATTEMPT_COLUMNS, Columns as _, DELIVERY_COLUMNS, IDEMPOTENCY_WINDOW_MS, corrupt,
};

/// Queues `message_id` again as a new pending delivery, due at `now`; returns its id.
async fn requeue(
    conn: &mut impl Exec,
    account: &AccountId,
    message_id: &str,
    event: &str,
    now: i64,
) -> Result<DeliveryId, StoreError> {
    let id = DeliveryId::generate();
    conn.run(
        "INSERT INTO deliveries (id, message_id, account_id, event, status, next_attempt_at, \
                                 created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5)",
        &[id.as_str().into(), message_id.into(), account.as_str().into(), event.into(), now.into()],
    )
    .await
    .map_err(backend)?;
    Ok(id)
}

impl<B: Backend> SqlStore<B> {
    /// Commits `tx`, having told the other nodes that deliveries became due when `due`.
    async fn commit_due(&self, mut tx: WriteTx<B>, due: bool) -> Result<(), StoreError> {
        if due {
            B::notify(&mut tx, Notice::Due).await?;
        }
        tx.commit().await.map_err(backend)
    }
}

#[async_trait]
impl<B: Backend> DeliveryLog for SqlStore<B> {
    async fn record_test_attempt(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        body: &[u8],
        record: &AttemptRecord,
        succeeded: bool,
    ) -> Result<DeliveryId, StoreError> {
        let delivery_id = DeliveryId::generate();
        let status = if succeeded { DeliveryStatus::Succeeded } else { DeliveryStatus::Failed };
        let mut tx = self.begin_write().await?;
        ensure_account(&mut *tx, account).await?;
        tx.run(
            "INSERT INTO messages (id, account_id, event, body, ordering_key, created_at) \
             VALUES ($1, $2, 'test', $3, NULL, $4)",
            &[
                message_id.as_str().into(),
                account.as_str().into(),
                body.into(),
                record.started_at_ms.into(),
            ],
        )
        .await
        .map_err(backend)?;
        tx.run(
            "INSERT INTO deliveries (id, message_id, account_id, event, status, attempts, \
                                     last_status_code, last_error, created_at, updated_at) \
             VALUES ($1, $2, $3, 'test', $4, 1, $5, $6, $7, $7)",
            &[
                delivery_id.as_str().into(),
                message_id.as_str().into(),
                account.as_str().into(),
                status.as_str().into(),
                record.status_code.map(i64::from).into(),
                record.error.as_deref().into(),
                record.started_at_ms.into(),
            ],
        )
        .await
        .map_err(backend)?;
        insert_attempt(&mut *tx, &delivery_id, 1, record).await?;
        tx.commit().await.map_err(backend)?;
        Ok(delivery_id)
    }

    async fn list_deliveries(
        &self,
        account: &AccountId,
        filter: &DeliveryFilter,
        cursor: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = list_sql(filter, cursor.is_some());
        let [as_pbx_id, as_call_id] = filter.call.as_deref().map(keys_of_call).unwrap_or_default();
        let args = [
            account.as_str().into(),
            cursor.map(|b| b.as_str()).into(),
            filter.status.map(|s| s.as_str()).into(),
            filter.event.map(|e| e.name()).into(),
            filter.since_ms.into(),
            i64::from(limit).into(),
            as_pbx_id.as_str().into(),
            as_call_id.as_str().into(),
        ];
        self.all_rows(AssertSqlSafe(sql), &args, rows::delivery).await
    }

    async fn get_delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        self.read_one(AssertSqlSafe(sql), &[id.as_str().into()], rows::delivery).await
    }

    async fn list_attempts(&self, id: &DeliveryId) -> Result<Vec<AttemptRecord>, StoreError> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt"
        );
        self.all_rows(AssertSqlSafe(sql), &[id.as_str().into()], rows::attempt).await
    }

    async fn message_body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_one("SELECT body FROM messages WHERE id = $1", &[id.as_str().into()], |r| {
            r.bytes(0)
        })
        .await
    }

    async fn attempt_buckets(
        &self,
        account: &AccountId,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<AttemptBucket>, StoreError> {
        self.all_rows(
            "SELECT (a.started_at / $3) * $3 AS bucket, COUNT(*), \
                    SUM(CASE WHEN a.status_code BETWEEN 200 AND 299 THEN 1 ELSE 0 END), \
                    CAST(AVG(a.duration_ms) AS DOUBLE PRECISION), MAX(a.duration_ms) \
             FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id \
             WHERE d.account_id = $1 AND a.started_at >= $2 \
             GROUP BY bucket ORDER BY bucket",
            &[account.as_str().into(), since_ms.into(), bucket_ms.max(1).into()],
            rows::attempt_bucket,
        )
        .await
    }

    async fn resend(
        &self,
        account: &AccountId,
        id: &DeliveryId,
        now_ms: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let original = tx
            .optional(
                "SELECT message_id, event FROM deliveries WHERE id = $1 AND account_id = $2",
                &[id.as_str().into(), account.as_str().into()],
            )
            .await
            .map_err(backend)?;
        let Some(row) = original else {
            return Ok(None);
        };
        let new_id = requeue(&mut *tx, account, &row.text(0)?, &row.text(1)?, now_ms).await?;
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        let created = tx
            .optional(AssertSqlSafe(sql), &[new_id.as_str().into()])
            .await
            .map_err(backend)?
            .ok_or_else(|| corrupt("a resent delivery vanished"))?;
        let record = rows::delivery(&created)?;
        self.commit_due(tx, true).await?;
        Ok(Some(record))
    }

    async fn resend_failed_since(
        &self,
        account: &AccountId,
        since_ms: i64,
        now_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        // One resend of an account's failures at a time: the second call's select then sees the
        // first's new deliveries.
        B::take_turn(&mut tx, Turn::ResendsOf(account)).await?;
        // Messages whose latest delivery (highest, time-ordered id) failed.
        let due = tx
            .all(
                "SELECT d.message_id, d.event FROM deliveries d \
                 WHERE d.account_id = $1 AND d.status = 'failed' AND d.created_at >= $2 \
                   AND d.event <> 'test' \
                   AND NOT EXISTS (SELECT 1 FROM deliveries n \
                                   WHERE n.message_id = d.message_id AND n.id > d.id) \
                 ORDER BY d.id LIMIT $3",
                &[account.as_str().into(), since_ms.into(), i64::from(limit).into()],
            )
            .await
            .map_err(backend)?;
        for row in &due {
            requeue(&mut *tx, account, &row.text(0)?, &row.text(1)?, now_ms).await?;
        }
        self.commit_due(tx, !due.is_empty()).await?;
        Ok(due.len() as u64)
    }

    async fn backlog(&self, account: &AccountId) -> Result<u64, StoreError> {
        let n = self
            .read_one(
                "SELECT count(*) FROM deliveries \
                 WHERE account_id = $1 AND status IN ('pending', 'delivering')",
                &[account.as_str().into()],
                |row| row.int(0),
            )
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn prune(
        &self,
        cutoff_ms: i64,
        revocations_before_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        if !B::try_job(&mut tx, Job::Prune).await? {
            return Ok(0);
        }
        // Deliveries and their attempts go with their message (ON DELETE CASCADE). Paused deliveries
        // are kept for the retention period only, as DESIGN.md says; pending and in-flight ones stay.
        // The oldest a message of any account may be: the default, or the shortest override.
        let shortest = tx
            .optional("SELECT MIN(retention_ms) FROM accounts WHERE retention_ms IS NOT NULL", &[])
            .await
            .map_err(backend)?
            .map(|r| r.opt_int(0))
            .transpose()?
            .flatten();
        let bound = shortest.map_or(cutoff_ms, |ms| cutoff_ms.max(now_ms - ms));
        let messages = tx
            .run(
                "DELETE FROM messages WHERE created_at < $1 \
                 AND created_at < COALESCE((SELECT $3 - a.retention_ms FROM accounts a \
                                            WHERE a.id = messages.account_id), $2) \
                 AND NOT EXISTS ( \
                    SELECT 1 FROM deliveries d WHERE d.message_id = messages.id \
                    AND d.status IN ('pending', 'delivering'))",
                &[bound.into(), cutoff_ms.into(), now_ms.into()],
            )
            .await
            .map_err(backend)?;
        for (sql, before) in [
            ("DELETE FROM idempotency_keys WHERE created_at <= $1", now_ms - IDEMPOTENCY_WINDOW_MS),
            ("DELETE FROM sessions WHERE expires_at <= $1", now_ms),
            ("DELETE FROM client_revocations WHERE revoked_at < $1", revocations_before_ms),
        ] {
            tx.run(sql, &[before.into()]).await.map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(messages)
    }
}

/// The statement of [`list_deliveries`](DeliveryLog::list_deliveries): only fixed fragments are
/// spliced in, every value is bound ($1 account, $2 cursor, $3 status, $4 event, $5 since,
/// $6 limit, $7 and $8 the call as a `pbx_id` and as a `call_id`).
fn list_sql(filter: &DeliveryFilter, has_cursor: bool) -> String {
    // One call's: the account's messages of that call through the chain index (account, ordering
    // key, seq), then every delivery of those messages, resends included, through the message
    // index. (An `account_id` test beside it would let SQLite's planner walk the account's whole
    // index instead; the messages are the account's already.)
    let mut sql = if filter.call.is_some() {
        format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE message_id IN \
             (SELECT message_id FROM deliveries WHERE account_id = $1 AND ordering_key IN ($7, $8))"
        )
    } else {
        format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE account_id = $1")
    };
    // Newest first by id (time-ordered). A call's story runs in ingest order: by the time it was
    // stored, then by its place in the call's chain (`seq`, commit order; a resend, outside the
    // chain, has none), which ids alone cannot give within one millisecond. For a call,
    // `+created_at` (the column, to PostgreSQL) keeps SQLite's planner from walking the account's
    // whole (account, created_at) index to save sorting a handful of rows (tested below).
    let created_at = if filter.oldest_first() { "+created_at" } else { "created_at" };
    let (past_cursor, order) = if filter.oldest_first() {
        (
            " AND (+created_at, COALESCE(seq, 0), id) > \
             (SELECT created_at, COALESCE(seq, 0), id FROM deliveries \
              WHERE id = $2 AND account_id = $1)",
            "+created_at, COALESCE(seq, 0), id",
        )
    } else {
        (" AND id < $2", "id DESC")
    };
    if has_cursor {
        sql.push_str(past_cursor);
    }
    if filter.status.is_some() {
        sql.push_str(" AND status = $3");
    }
    if filter.event.is_some() {
        sql.push_str(" AND event = $4");
    }
    if filter.since_ms.is_some() {
        sql.push_str(&format!(" AND {created_at} >= $5"));
    }
    sql.push_str(&format!(" ORDER BY {order} LIMIT $6"));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Answers from an index": SQLite's plan for one call's deliveries, with every other filter
    /// and a cursor, searches the chain index (account, ordering key, seq) for the call's
    /// messages, the message index for their deliveries, and scans nothing.
    #[tokio::test]
    async fn a_calls_deliveries_are_found_through_the_chain_index() {
        let mut plans = super::super::Plans::new().await;
        let call = DeliveryFilter { call: Some("42".into()), ..DeliveryFilter::default() };
        let every = DeliveryFilter {
            status: Some(DeliveryStatus::Pending),
            event: Some(sipsim_core::Event::Speech),
            since_ms: Some(1),
            ..call.clone()
        };
        for (filter, has_cursor) in [(&call, false), (&call, true), (&every, true)] {
            let plan = plans.of(&list_sql(filter, has_cursor)).await;
            let uses =
                |index: &str| plan.iter().any(|s| s.starts_with("SEARCH") && s.contains(index));
            assert!(uses("deliveries_chain") && uses("deliveries_by_message"), "{plan:?}");
            assert!(!plan.iter().any(|step| step.starts_with("SCAN")), "{plan:?}");
        }
    }
}
