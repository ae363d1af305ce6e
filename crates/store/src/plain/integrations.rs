//! An account's integration: its settings, signing secrets, subscriptions, and the pauses that
//! keep its deliveries waiting.

use async_trait::async_trait;
use sipsim_core::cipher::seal;
use sipsim_core::clock::now_ms;
use sipsim_core::secret::SigningSecret;
use sipsim_core::store::{
    DeliveryRate, Integration, IntegrationState, IntegrationUpdate, Integrations, KeptDeliveries,
    SubscriptionChange,
};
use sipsim_core::{AccountId, EventSet, StoreError};
use sqlx::AssertSqlSafe;

use super::{Backend, Exec as _, Job, Notice, SqlStore, ensure_account, release_chain_heads};
use crate::backend;
use crate::rows::{self, Columns as _, INTEGRATION_COLUMNS, corrupt, secret_context};

impl<B: Backend> SqlStore<B> {
    /// `secret` as stored in `account`'s row: sealed when a key is configured.
    fn sealed(&self, secret: &SigningSecret, account: &AccountId) -> String {
        seal(self.cipher.as_ref(), secret.expose(), &secret_context(account))
    }

    /// The integration an `UPDATE … RETURNING` on the writer leaves, if it matched a row.
    async fn updated_integration(
        &self,
        sql: String,
        args: &[super::Arg<'_>],
    ) -> Result<Option<Integration>, StoreError> {
        let cipher = self.cipher.as_ref();
        self.one_row(self.writer(), AssertSqlSafe(sql), args, |r| rows::integration(r, cipher))
            .await
    }
}

#[async_trait]
impl<B: Backend> Integrations for SqlStore<B> {
    async fn settings_version(&self) -> Result<i64, StoreError> {
        self.read_one("SELECT version FROM settings_version WHERE id = 1", &[], |r| r.int(0))
            .await?
            .ok_or_else(|| corrupt("the settings_version row is missing"))
    }

    async fn get_integration(
        &self,
        account: &AccountId,
    ) -> Result<Option<Integration>, StoreError> {
        let sql = format!("SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE account_id = $1");
        let cipher = self.cipher.as_ref();
        self.read_one(AssertSqlSafe(sql), &[account.as_str().into()], |r| {
            rows::integration(r, cipher)
        })
        .await
    }

    async fn put_integration(
        &self,
        account: &AccountId,
        update: IntegrationUpdate,
    ) -> Result<(Integration, bool), StoreError> {
        let requested =
            if update.disabled { IntegrationState::Disabled } else { IntegrationState::Enabled };
        let secret = self.sealed(&update.new_signing_secret, account);
        let mut tx = self.begin_write().await?;
        ensure_account(&mut *tx, account).await?;
        // One upsert: a paused integration stays paused, subscriptions change only when given, and the
        // signing secret of an existing integration is never replaced. `version = 1` means created.
        let sql = format!(
            "INSERT INTO integrations (account_id, webhook_url, state, event_mask, signing_secret, \
                                       version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6) \
             ON CONFLICT (account_id) DO UPDATE SET \
                webhook_url = excluded.webhook_url, \
                state = CASE WHEN integrations.state = 'paused' THEN 'paused' ELSE excluded.state END, \
                event_mask = CASE WHEN $7 THEN excluded.event_mask ELSE integrations.event_mask END, \
                version = integrations.version + 1, \
                updated_at = excluded.updated_at \
             RETURNING {INTEGRATION_COLUMNS}"
        );
        let row = tx
            .optional(
                AssertSqlSafe(sql),
                &[
                    account.as_str().into(),
                    update.webhook_url.as_str().into(),
                    requested.as_str().into(),
                    update.events.unwrap_or_default().bits().into(),
                    secret.as_str().into(),
                    now_ms().into(),
                    update.events.is_some().into(),
                ],
            )
            .await
            .map_err(backend)?
            .ok_or_else(|| corrupt("an upsert returned no row"))?;
        let integration = rows::integration(&row, self.cipher.as_ref())?;
        tx.commit().await.map_err(backend)?;
        let created = integration.version == 1;
        Ok((integration, created))
    }

    async fn remove_integration(&self, account: &AccountId) -> Result<bool, StoreError> {
        let removed = self
            .write_run("DELETE FROM integrations WHERE account_id = $1", &[account.as_str().into()])
            .await?;
        Ok(removed > 0)
    }

    async fn rotate_signing_secret(
        &self,
        account: &AccountId,
        new_secret: &SigningSecret,
        old_valid_until_ms: i64,
    ) -> Result<Option<Integration>, StoreError> {
        // The current secret moves, still sealed, to the previous-secret column (same context).
        let sql = format!(
            "UPDATE integrations SET previous_signing_secret = signing_secret, \
                    previous_secret_expires_at = $3, signing_secret = $2, \
                    version = version + 1, updated_at = $4 \
             WHERE account_id = $1 RETURNING {INTEGRATION_COLUMNS}"
        );
        let secret = self.sealed(new_secret, account);
        let args = [
            account.as_str().into(),
            secret.as_str().into(),
            old_valid_until_ms.into(),
            now_ms().into(),
        ];
        self.updated_integration(sql, &args).await
    }

    async fn change_subscription(
        &self,
        account: &AccountId,
        change: SubscriptionChange,
    ) -> Result<Option<Integration>, StoreError> {
        let (add, remove) = match change {
            SubscriptionChange::Subscribe(e) => (EventSet::of(e).bits(), 0),
            SubscriptionChange::Unsubscribe(e) => (0, EventSet::of(e).bits()),
        };
        // The new mask is computed in the database from the stored one, so two concurrent changes to
        // different events both survive. The version moves only when the set really changes.
        let sql = format!(
            "UPDATE integrations SET \
                version = version + CASE WHEN ((event_mask | $2) & ~$3) <> event_mask THEN 1 ELSE 0 END, \
                updated_at = CASE WHEN ((event_mask | $2) & ~$3) <> event_mask THEN $4 ELSE updated_at END, \
                event_mask = (event_mask | $2) & ~$3 \
             WHERE account_id = $1 \
             RETURNING {INTEGRATION_COLUMNS}"
        );
        let args = [account.as_str().into(), add.into(), remove.into(), now_ms().into()];
        self.updated_integration(sql, &args).await
    }

    async fn set_delivery_rate(
        &self,
        account: &AccountId,
        rate: Option<DeliveryRate>,
    ) -> Result<Option<Integration>, StoreError> {
        let sql = format!(
            "UPDATE integrations SET max_rate_milli = $2, version = version + 1, updated_at = $3 \
             WHERE account_id = $1 RETURNING {INTEGRATION_COLUMNS}"
        );
        let milli = rate.map(|r| i64::from(r.milli()));
        self.updated_integration(sql, &[account.as_str().into(), milli.into(), now_ms().into()])
            .await
    }

    async fn delivery_rates(&self) -> Result<Vec<(AccountId, DeliveryRate)>, StoreError> {
        self.all_rows(
            "SELECT account_id, max_rate_milli FROM integrations WHERE max_rate_milli IS NOT NULL",
            &[],
            |row| {
                let account = AccountId::parse(&row.text(0)?).map_err(corrupt)?;
                let milli = row.int(1)?;
                let rate = DeliveryRate::from_milli(milli)
                    .ok_or_else(|| corrupt(format!("delivery rate {milli}")))?;
                Ok((account, rate))
            },
        )
        .await
    }

    async fn pause_integration(
        &self,
        account: &AccountId,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let paused = self
            .write_run(
                "UPDATE integrations SET state = 'paused', paused_reason = $2, paused_at = $3, \
                        version = version + 1, updated_at = $3 \
                 WHERE account_id = $1 AND state = 'enabled'",
                &[account.as_str().into(), reason.into(), now_ms.into()],
            )
            .await?;
        Ok(paused > 0)
    }

    async fn pause_failing_integrations(
        &self,
        failing_since_before: i64,
        now_ms: i64,
    ) -> Result<Vec<AccountId>, StoreError> {
        let mut tx = self.begin_write().await?;
        if !B::try_job(&mut tx, Job::PauseFailing).await? {
            return Ok(Vec::new());
        }
        let paused = tx
            .all(
                "UPDATE integrations SET state = 'paused', version = version + 1, updated_at = $2, \
                    paused_at = $2, paused_reason = 'every delivery attempt has failed for the whole pause period' \
                 WHERE state = 'enabled' AND failing_since IS NOT NULL AND failing_since <= $1 \
                 RETURNING account_id",
                &[failing_since_before.into(), now_ms.into()],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|row| AccountId::parse(&row.text(0)?).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await.map_err(backend)?;
        Ok(paused)
    }

    async fn resume_integration(
        &self,
        account: &AccountId,
        kept: KeptDeliveries,
        now_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let resumed = tx
            .run(
                "UPDATE integrations SET state = 'enabled', paused_reason = NULL, paused_at = NULL, \
                        failing_since = NULL, version = version + 1, updated_at = $2 \
                 WHERE account_id = $1 AND state = 'paused'",
                &[account.as_str().into(), now_ms.into()],
            )
            .await
            .map_err(backend)?;
        if resumed == 0 {
            tx.commit().await.map_err(backend)?;
            return Ok(None);
        }
        let sql = match kept {
            // Kept deliveries of a chain wait for their turn; the chains' heads are released below.
            KeptDeliveries::Deliver => {
                "UPDATE deliveries SET status = 'pending', updated_at = $2, \
                        next_attempt_at = CASE WHEN ordering_key IS NULL THEN $2 ELSE NULL END \
                 WHERE account_id = $1 AND status = 'paused'"
            }
            KeptDeliveries::Drop => {
                "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, updated_at = $2, \
                        last_error = 'dropped when the paused integration was resumed' \
                 WHERE account_id = $1 AND status = 'paused'"
            }
        };
        let affected =
            tx.run(sql, &[account.as_str().into(), now_ms.into()]).await.map_err(backend)?;
        release_chain_heads(&mut *tx, account, now_ms).await?;
        if kept == KeptDeliveries::Deliver && affected > 0 {
            B::notify(&mut tx, Notice::Due).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(affected))
    }
}
