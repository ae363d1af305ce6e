//! The delivery queue on PostgreSQL: ingest, claim, complete, release expired leases — safe with
//! any number of nodes writing at once.
//!
//! Writers on different nodes run concurrently (READ COMMITTED), so what SQLite gets from its single
//! write lock is made explicit here: claims lock the rows they take and skip rows another node holds
//! (`FOR UPDATE SKIP LOCKED`); everything that reads or changes a call's chain (ingest assigning the
//! next `seq`, a finished delivery releasing the next) first takes that chain's advisory lock, and
//! same-key idempotency checks take theirs, always in ascending key order (ingest: every key's, then
//! every chain's) so two transactions never wait on each other in a cycle. Each lock is held to
//! commit, so commit order is chain order.
//!
//! The three hot paths — ingest, claim, recording results — are PL/pgSQL functions (migrations
//! 0007–0011) called in autocommit, one round trip each: the statements run next to the data rather
//! than one round trip apiece while the transaction holds its locks.

use std::collections::HashSet;

use async_trait::async_trait;

use sipsim_core::queue::{
    ClaimedDelivery, Completed, Completion, DeliveryStatus, FinishedAttempt, IngestOutcome,
    NewMessage, Shares, SkipReason, TRAIN_LEN,
};
use sipsim_core::store::{DeliveryQueue, QueueStats};
use sipsim_core::{AccountId, DeliveryId, EventSet, MessageId, StoreError};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use super::{INGEST_WRITERS, Job, PgStore, job_lock, notify_due};
use crate::backend;
use crate::rotation;
use crate::rows::{self, ClaimError, IDEMPOTENCY_WINDOW_MS, corrupt};

/// The tables the queue's hot statements read and write, whose planner statistics
/// [`DeliveryQueue::refresh_planner_statistics`] keeps current.
const QUEUE_TABLES: [&str; 5] =
    ["deliveries", "delivery_attempts", "idempotency_keys", "integrations", "messages"];

#[async_trait]
impl DeliveryQueue for PgStore {
    /// Group commit: several independent batches in one call of `sipsim_ingest` (migrations 0008
    /// to 0010), one round trip and one transaction; a batch naming an unknown account stores
    /// nothing, the others are unaffected. The other nodes are woken after the commit.
    async fn ingest_groups(
        &self,
        groups: &[&[NewMessage]],
        now: i64,
    ) -> Result<Vec<Result<Vec<IngestOutcome>, StoreError>>, StoreError> {
        let count: usize = groups.iter().map(|g| g.len()).sum();
        let mut cols = IngestColumns::default();
        for (group, batch) in groups.iter().enumerate() {
            for msg in batch.iter() {
                cols.push(group as i64, msg);
            }
        }
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT * FROM sipsim_ingest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(now)
        .bind(now - IDEMPOTENCY_WINDOW_MS)
        .bind(&cols.group)
        .bind(&cols.message)
        .bind(&cols.delivery)
        .bind(&cols.account)
        .bind(&cols.event)
        .bind(&cols.event_bit)
        .bind(&cols.body)
        .bind(&cols.key)
        .bind(&cols.idempotency)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        if rows.len() != count {
            return Err(corrupt(format!(
                "ingest answered {} rows for {count} messages",
                rows.len()
            )));
        }
        // Only pending deliveries can be claimed; paused ones wait for a resume, which wakes the
        // nodes itself.
        if rows.iter().any(|(outcome, _, _)| outcome == "pending") {
            self.due.raise();
        }
        let mut rows = rows.into_iter();
        let mut results = Vec::with_capacity(groups.len());
        for batch in groups {
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut unknown = None;
            for (outcome, message, delivery) in rows.by_ref().take(batch.len()) {
                let skipped = |reason| -> Result<IngestOutcome, StoreError> {
                    Ok(IngestOutcome::Skipped {
                        message_id: MessageId::parse(&message).map_err(corrupt)?,
                        reason,
                    })
                };
                outcomes.push(match outcome.as_str() {
                    "pending" | "paused" => IngestOutcome::Enqueued {
                        message_id: MessageId::parse(&message).map_err(corrupt)?,
                        delivery_id: DeliveryId::parse(&delivery).map_err(corrupt)?,
                    },
                    "duplicate" => IngestOutcome::Duplicate {
                        message_id: MessageId::parse(&message).map_err(corrupt)?,
                    },
                    "no_integration" => skipped(SkipReason::NoIntegration)?,
                    "disabled" => skipped(SkipReason::Disabled)?,
                    "not_subscribed" => skipped(SkipReason::NotSubscribed)?,
                    "unknown_account" => {
                        unknown = Some(AccountId::parse(&message).map_err(corrupt)?);
                        continue;
                    }
                    other => return Err(corrupt(format!("ingest outcome '{other}'"))),
                });
            }
            results.push(match unknown {
                Some(account) => Err(StoreError::AccountNotFound(account)),
                None => Ok(outcomes),
            });
        }
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
        // One statement, its own (implicit) transaction, one round trip: `sipsim_claim_turn`
        // (migration 0011) visits the accounts in turn from where this node's last claim stopped,
        // gives each its share and claims. Nothing is held after it: it locks what it takes and
        // skips what another node holds. Plans cached while the queue was nearly empty are dropped
        // when the nodes analyze the grown tables (`refresh_planner_statistics`); until then the
        // function's settings and shape keep it on its indexes (migrations 0007, 0011,
        // docs/DECISIONS.md, "PostgreSQL's planner without autovacuum").
        let (busy, busy_n): (Vec<&str>, Vec<i64>) =
            shares.in_use.iter().map(|(account, n)| (account.as_str(), i64::from(*n))).unzip();
        let (lowered, lowered_n): (Vec<&str>, Vec<i64>) =
            shares.lowered.iter().map(|(account, n)| (account.as_str(), i64::from(*n))).unzip();
        let rows = sqlx::query(
            "SELECT * FROM sipsim_claim_turn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&token)
        .bind(now + lease_ms)
        .bind(now)
        .bind(TRAIN_LEN)
        .bind(self.rotation.last())
        .bind(rotation::accounts_to_visit(shares, limit))
        .bind(i64::from(shares.per_account))
        .bind(busy)
        .bind(busy_n)
        .bind(lowered)
        .bind(lowered_n)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut visited = Vec::new();
        for row in &rows {
            // The visited accounts come as rows without a delivery: the account and its place.
            if row.try_get::<Option<&str>, _>(0).map_err(backend)?.is_none() {
                let account = row.try_get::<&str, _>(2).map_err(backend)?;
                let step = row.try_get::<i64, _>(11).map_err(backend)?;
                visited.push((step, AccountId::parse(account).map_err(corrupt)?));
                continue;
            }
            match rows::claimed(row, &token, self.cipher.as_ref(), now) {
                Ok(c) => out.push(c),
                // A secret this node cannot open (wrong or missing SIPSIM_ENCRYPTION_KEY): every
                // delivery of this claim is handed back for a node that can, and the dispatcher
                // stops claiming. Never marked failed.
                Err(ClaimError::Secret(id, why)) => {
                    self.hand_back(&token).await?;
                    return Err(StoreError::SecretUnreadable(format!("delivery {id}: {why}")));
                }
                Err(ClaimError::Store(e)) => {
                    self.hand_back(&token).await?;
                    return Err(e);
                }
            }
        }
        visited.sort_by_key(|(step, _)| *step);
        self.rotation
            .advance(visited.iter().map(|(_, account)| account), out.iter().map(|c| &c.account_id));
        Ok(out)
    }

    /// Group commit of attempt results: one call of `sipsim_record` (migration 0009), one round
    /// trip and one transaction for all of them. Returns, for each, whether its lease still held,
    /// and how many chains moved on.
    async fn complete(&self, results: &[FinishedAttempt]) -> Result<Completed, StoreError> {
        let mut cols = ResultColumns::default();
        for r in results {
            cols.push(r);
        }
        let (held, released): (Vec<String>, i64) = sqlx::query_as(
            "SELECT * FROM sipsim_record($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], \
                                         $5::BIGINT[], $6::TEXT[], $7::BIGINT[], $8::BIGINT[], \
                                         $9::TEXT[])",
        )
        .bind(&cols.id)
        .bind(&cols.token)
        .bind(&cols.status)
        .bind(&cols.next_at)
        .bind(&cols.code)
        .bind(&cols.error)
        .bind(&cols.started)
        .bind(&cols.duration)
        .bind(&cols.snippet)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let held: HashSet<String> = held.into_iter().collect();
        Ok(Completed {
            applied: results.iter().map(|r| held.contains(r.id.as_str())).collect(),
            released: u64::try_from(released).unwrap_or(0),
        })
    }

    async fn refresh_planner_statistics(&self) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if !job_lock(&mut tx, Job::Analyze).await? {
            return Ok(Vec::new());
        }
        // autovacuum's default rule (autovacuum_analyze_threshold 50, scale factor 0.1); a table
        // never analyzed has reltuples -1, so any 50 changes qualify.
        let changed: Vec<String> = sqlx::query_scalar(
            "SELECT s.relname::TEXT FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.schemaname = current_schema() AND s.relname = ANY($1) \
               AND s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0) \
             ORDER BY s.relname",
        )
        .bind(&QUEUE_TABLES[..])
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        // Only the constant names are spliced in.
        for table in QUEUE_TABLES.iter().filter(|t| changed.iter().any(|c| c == *t)) {
            sqlx::query(AssertSqlSafe(format!("ANALYZE {table}")))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(changed)
    }

    async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        // In due order from the first due time, never through the deliveries waiting behind their
        // call's earlier events (no due time).
        let row = sqlx::query(
            "SELECT d.next_attempt_at FROM deliveries d \
             JOIN integrations i ON i.account_id = d.account_id \
             WHERE d.status = 'pending' AND d.next_attempt_at IS NOT NULL AND i.state = 'enabled' \
             ORDER BY d.next_attempt_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|r| r.try_get(0)).transpose().map_err(backend)
    }

    async fn queue_stats(&self, now_ms: i64) -> Result<QueueStats, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM deliveries WHERE status = 'pending'), \
               (SELECT COUNT(*) FROM deliveries d JOIN integrations i ON i.account_id = d.account_id \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND i.state = 'enabled'), \
               (SELECT MIN(d.next_attempt_at) FROM deliveries d \
                 JOIN integrations i ON i.account_id = d.account_id \
                 WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND i.state = 'enabled'), \
               (SELECT COUNT(*) FROM deliveries WHERE status = 'delivering'), \
               (SELECT COUNT(*) FROM integrations WHERE state = 'paused')",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        rows::queue_stats(&row)
    }

    async fn unclaim(&self, claimed: &[(DeliveryId, String)], now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The chains' locks first, as a completion takes them: whichever of the two commits first,
        // the other sees it, so a train's first unsent delivery is released exactly once.
        lock_chains_of(&mut tx, claimed.iter().map(|(id, _)| id.as_str()).collect()).await?;
        // A head keeps its due time; a train's first unsent delivery, now its chain's earliest
        // unfinished one, is due at once, and the ones behind it wait again.
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE deliveries SET status = 'pending', attempts = attempts - 1, \
                    lease_token = NULL, lease_expires_at = NULL, next_attempt_at = {} \
             FROM unnest($1::TEXT[], $2::TEXT[]) AS u(id, token) \
             WHERE deliveries.id = u.id AND deliveries.lease_token = u.token \
               AND deliveries.status = 'delivering'",
            rows::due_unless_waiting(
                "deliveries.next_attempt_at",
                "COALESCE(deliveries.next_attempt_at, $3)"
            )
        )))
        .bind(claimed.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
        .bind(claimed.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        notify_due(&mut tx).await?;
        tx.commit().await.map_err(backend)
    }

    fn ingest_writers(&self) -> usize {
        INGEST_WRITERS
    }

    async fn release_expired_leases(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.release_leases(now_ms, now_ms).await
    }

    async fn reclaim_all_leases(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.release_leases(i64::MAX, now_ms).await
    }
}

impl PgStore {
    /// Undoes a claim this node cannot send: its deliveries are as they were before it (due, or
    /// waiting behind their head; only `updated_at` keeps the claim's time), the attempt it counted
    /// taken back. If this fails too (the
    /// database went away), their leases expire and [`PgStore::release_leases`] hands them back.
    async fn hand_back(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', lease_token = NULL, \
                    lease_expires_at = NULL, attempts = attempts - 1 \
             WHERE lease_token = $1 AND status = 'delivering'",
        )
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// Makes deliveries whose lease expires at or before `expired_by` due at `now`.
    pub(super) async fn release_leases(
        &self,
        expired_by: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        if !job_lock(&mut tx, Job::ReleaseLeases).await? {
            return Ok(0);
        }
        // The chains first (in key order, as everyone takes them): a train's deliveries go back
        // behind their head, and a completion of the same chain must not decide which one is the
        // head from before this commit.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(k) FROM ( \
                SELECT DISTINCT hashtextextended('chain:' || account_id || ':' || ordering_key, 0) AS k \
                FROM deliveries \
                WHERE status = 'delivering' AND lease_expires_at <= $1 AND ordering_key IS NOT NULL \
                ORDER BY k OFFSET 0) AS keys",
        )
        .bind(expired_by)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        // A row a live node is completing right now is locked: skip it; its lease ends anyway.
        let released = sqlx::query(AssertSqlSafe(format!(
            "UPDATE deliveries SET status = 'pending', lease_token = NULL, lease_expires_at = NULL, \
                    updated_at = $2, next_attempt_at = {} \
             WHERE id IN (SELECT id FROM deliveries \
                          WHERE status = 'delivering' AND lease_expires_at <= $1 \
                          FOR UPDATE SKIP LOCKED)",
            rows::due_unless_waiting("$2", "$2")
        )))
        .bind(expired_by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected();
        if released > 0 {
            notify_due(&mut tx).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(released)
    }
}

/// Stores one batch inside the caller's transaction (or savepoint), with the same outcome as
/// storing its messages one by one, in a fixed number of statements: what ingest must know is read
/// in bulk (accounts, idempotency keys, each chain's last number), decided here, and written with one
/// `INSERT … SELECT FROM unnest(…)` per table. `snapshots` are the batch's integrations, locked by
/// the caller.
/// The arguments of `sipsim_ingest`: one array per column, one element per message. Ids are made
/// here, as everywhere else; a duplicate's or a skipped message's delivery id is never used.
#[derive(Default)]
struct IngestColumns<'a> {
    group: Vec<i64>,
    message: Vec<String>,
    delivery: Vec<String>,
    account: Vec<&'a str>,
    event: Vec<&'static str>,
    event_bit: Vec<i64>,
    body: Vec<&'a [u8]>,
    key: Vec<Option<&'a str>>,
    idempotency: Vec<Option<&'a str>>,
}

impl<'a> IngestColumns<'a> {
    fn push(&mut self, group: i64, msg: &'a NewMessage) {
        self.group.push(group);
        self.message.push(MessageId::generate().as_str().to_owned());
        self.delivery.push(DeliveryId::generate().as_str().to_owned());
        self.account.push(msg.account_id.as_str());
        self.event.push(msg.event.name());
        self.event_bit.push(EventSet::of(msg.event).bits());
        self.body.push(&msg.body);
        self.key.push(msg.ordering_key.as_deref());
        self.idempotency.push(msg.idempotency_key.as_deref());
    }
}

/// The arguments of `sipsim_record`: one array per column, one element per attempt result.
#[derive(Default)]
struct ResultColumns<'a> {
    id: Vec<&'a str>,
    token: Vec<&'a str>,
    status: Vec<&'static str>,
    next_at: Vec<Option<i64>>,
    code: Vec<Option<i64>>,
    error: Vec<Option<&'a str>>,
    started: Vec<i64>,
    duration: Vec<i64>,
    snippet: Vec<Option<&'a str>>,
}

impl<'a> ResultColumns<'a> {
    fn push(&mut self, r: &'a FinishedAttempt) {
        let (status, next_at) = match r.completion {
            Completion::Succeeded => (DeliveryStatus::Succeeded, None),
            Completion::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
            Completion::Failed => (DeliveryStatus::Failed, None),
            Completion::Paused => (DeliveryStatus::Paused, None),
        };
        let rec = &r.record;
        self.id.push(r.id.as_str());
        self.token.push(&r.lease_token);
        self.status.push(status.as_str());
        self.next_at.push(next_at);
        self.code.push(rec.status_code.map(i64::from));
        self.error.push(rec.error.as_deref());
        self.started.push(rec.started_at_ms);
        self.duration.push(rec.duration_ms);
        self.snippet.push(rec.response_snippet.as_deref());
    }
}

/// Takes the locks of the chains the deliveries `ids` belong to, in key order, each until commit.
async fn lock_chains_of(conn: &mut PgConnection, ids: Vec<&str>) -> Result<(), StoreError> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM ( \
            SELECT DISTINCT hashtextextended('chain:' || account_id || ':' || ordering_key, 0) AS k \
            FROM deliveries WHERE id = ANY($1) AND ordering_key IS NOT NULL \
            ORDER BY k OFFSET 0) AS keys",
    )
    .bind(ids)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}
