//! Failure emails: the integrations that may be owed one, their endpoints' recent answers, and the
//! claims that make one node send each notice once ([`sipsim_core::notice`] has the rules).

use async_trait::async_trait;
use sipsim_core::notice::{LastResponse, NoticeFacts, Owed, RecentResponses, SentNotice};
use sipsim_core::store::Notices;
use sipsim_core::{AccountId, StoreError};

use super::{Backend, Exec as _, SqlStore};
use crate::backend;
use crate::rows::{Columns, corrupt, integration_state};

/// How many of an account's newest deliveries tell what its endpoint answered lately: enough to
/// reach past a burst of new events kept behind a failing call, few enough that a backlog of
/// millions costs one short index walk.
const RECENT_DELIVERIES: i64 = 1000;

/// The integrations that may be owed a notice (each found through an index: the paused ones, the
/// failing ones, the unanswered alerts), with the notices sent for them.
const FACTS_SQL: &str = "\
    WITH candidates AS ( \
        SELECT account_id FROM integrations WHERE state = 'paused' AND paused_at IS NOT NULL \
        UNION \
        SELECT account_id FROM integrations \
        WHERE state = 'enabled' AND failing_since IS NOT NULL AND failing_since <= $1 \
        UNION \
        SELECT a.account_id FROM notices a \
        WHERE a.kind IN ('failing', 'paused') AND a.sent_at IS NOT NULL \
          AND a.sent_at > COALESCE((SELECT r.episode FROM notices r \
                                    WHERE r.account_id = a.account_id AND r.kind = 'recovered'), -1) \
    ) \
    SELECT i.account_id, i.webhook_url, i.state, i.paused_reason, i.paused_at, i.failing_since, \
           f.episode, f.sent_at, p.episode, p.sent_at, r.episode, r.sent_at \
    FROM candidates c JOIN integrations i ON i.account_id = c.account_id \
    LEFT JOIN notices f ON f.account_id = i.account_id AND f.kind = 'failing' \
    LEFT JOIN notices p ON p.account_id = i.account_id AND p.kind = 'paused' \
    LEFT JOIN notices r ON r.account_id = i.account_id AND r.kind = 'recovered' \
    ORDER BY i.account_id";

fn facts(row: &impl Columns) -> Result<NoticeFacts, StoreError> {
    let sent = |at: usize| -> Result<Option<SentNotice>, StoreError> {
        Ok(match (row.opt_int(at)?, row.opt_int(at + 1)?) {
            (Some(episode), Some(sent_at_ms)) => Some(SentNotice { episode, sent_at_ms }),
            _ => None,
        })
    };
    Ok(NoticeFacts {
        account_id: AccountId::parse(&row.text(0)?).map_err(corrupt)?,
        webhook_url: row.text(1)?,
        state: integration_state(row, 2)?,
        paused_reason: row.opt_text(3)?,
        paused_at_ms: row.opt_int(4)?,
        failing_since_ms: row.opt_int(5)?,
        failing: sent(6)?,
        paused: sent(8)?,
        recovered: sent(10)?,
    })
}

#[async_trait]
impl<B: Backend> Notices for SqlStore<B> {
    async fn notice_facts(
        &self,
        failing_since_before: i64,
    ) -> Result<Vec<NoticeFacts>, StoreError> {
        self.all_rows(FACTS_SQL, &[failing_since_before.into()], facts).await
    }

    async fn recent_responses(&self, account: &AccountId) -> Result<RecentResponses, StoreError> {
        let mut conn = self.read().await?;
        let recent = "SELECT status, attempts, last_status_code, last_error, updated_at \
                      FROM deliveries WHERE account_id = $1 ORDER BY id DESC LIMIT $2";
        let last = conn
            .optional(
                sqlx::AssertSqlSafe(format!(
                    "SELECT last_status_code, last_error, updated_at FROM ({recent}) d \
                     WHERE attempts > 0 ORDER BY updated_at DESC LIMIT 1"
                )),
                &[account.as_str().into(), RECENT_DELIVERIES.into()],
            )
            .await
            .map_err(backend)?
            .map(|row| -> Result<LastResponse, StoreError> {
                Ok(LastResponse {
                    status_code: row.opt_int(0)?.and_then(|c| u16::try_from(c).ok()),
                    error: row.opt_text(1)?,
                    at_ms: row.int(2)?,
                })
            })
            .transpose()?;
        let last_success_ms = conn
            .optional(
                sqlx::AssertSqlSafe(format!(
                    "SELECT MAX(updated_at) FROM ({recent}) d WHERE status = 'succeeded'"
                )),
                &[account.as_str().into(), RECENT_DELIVERIES.into()],
            )
            .await
            .map_err(backend)?
            .map(|row| row.opt_int(0))
            .transpose()?
            .flatten();
        Ok(RecentResponses { last, last_success_ms })
    }

    async fn claim_notice(
        &self,
        account: &AccountId,
        owed: Owed,
        now_ms: i64,
        sent_before_ms: i64,
        claimed_until_ms: i64,
    ) -> Result<bool, StoreError> {
        // From the integration's row, so a removed integration is claimed by no one; the upsert's
        // WHERE runs on the locked row, so of two nodes claiming at once one finds the other's claim.
        let claimed = self
            .write_run(
                "INSERT INTO notices (account_id, kind, sending_episode, claimed_until) \
                 SELECT account_id, $2, $3, $4 FROM integrations WHERE account_id = $1 \
                 ON CONFLICT (account_id, kind) DO UPDATE \
                 SET sending_episode = excluded.sending_episode, claimed_until = excluded.claimed_until \
                 WHERE (notices.episode IS NULL OR notices.episode <> excluded.sending_episode) \
                   AND (notices.sent_at IS NULL OR notices.sent_at <= $5) \
                   AND (notices.claimed_until IS NULL OR notices.claimed_until <= $6)",
                &[
                    account.as_str().into(),
                    owed.kind.as_str().into(),
                    owed.episode.into(),
                    claimed_until_ms.into(),
                    sent_before_ms.into(),
                    now_ms.into(),
                ],
            )
            .await?;
        Ok(claimed > 0)
    }

    async fn notice_sent(
        &self,
        account: &AccountId,
        owed: Owed,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let updated = self
            .write_run(
                "UPDATE notices SET episode = sending_episode, sent_at = $4, \
                        sending_episode = NULL, claimed_until = NULL \
                 WHERE account_id = $1 AND kind = $2 AND sending_episode = $3",
                &[
                    account.as_str().into(),
                    owed.kind.as_str().into(),
                    owed.episode.into(),
                    now_ms.into(),
                ],
            )
            .await?;
        Ok(updated > 0)
    }
}

#[cfg(test)]
mod tests {
    /// The notifier's look, every few seconds on every node, finds paused and failing integrations
    /// through their partial indexes, never by scanning every account's integration; only the small
    /// table of alerts sent is read whole.
    #[tokio::test]
    async fn integrations_in_trouble_are_found_through_indexes() {
        let plan = super::super::Plans::new().await.of(super::FACTS_SQL).await;
        for index in ["integrations_paused", "integrations_failing"] {
            let searched = |s: &String| s.starts_with("SEARCH integrations") && s.contains(index);
            assert!(plan.iter().any(searched), "{index}: {plan:?}");
        }
        assert!(!plan.iter().any(|s| s.starts_with("SCAN integrations")), "{plan:?}");
    }
}
