//! An account's webhook integration: saving it, its subscriptions, its signing secret, removing it,
//! ending a pause. Every change drops this node's cached copy before it returns, so the caller's
//! next read sees it.

use sipsim_core::clock::now_ms;
use sipsim_core::secret::SigningSecret;
use sipsim_core::store::{
    DeliveryRate, Integration, IntegrationUpdate, KeptDeliveries, SubscriptionChange,
};
use sipsim_core::{AccountId, StoreError};

use super::Service;

/// How long the old signing secret keeps signing `webhook-signature` after a regeneration.
pub const OLD_SECRET_VALID_MS: i64 = 24 * 3600 * 1000;

impl Service<'_> {
    /// Creates or changes `account`'s integration; returns it and whether it was created. A paused
    /// integration stays paused, and an existing one keeps its signing secret.
    pub async fn save_integration(
        &self,
        account: &AccountId,
        update: IntegrationUpdate,
    ) -> Result<(Integration, bool), StoreError> {
        let saved = self.store.put_integration(account, update).await;
        // Whatever the outcome: a write whose answer was lost may still have committed.
        self.forget_integration(account);
        saved
    }

    /// Subscribes to or unsubscribes from one event; `None` without an integration.
    pub async fn change_subscription(
        &self,
        account: &AccountId,
        change: SubscriptionChange,
    ) -> Result<Option<Integration>, StoreError> {
        let changed = self.store.change_subscription(account, change).await;
        self.forget_integration(account);
        changed
    }

    /// Removes `account`'s integration; whether there was one.
    pub async fn remove_integration(&self, account: &AccountId) -> Result<bool, StoreError> {
        let removed = self.store.remove_integration(account).await;
        self.forget_integration(account);
        removed
    }

    /// Gives the integration the signing secret `secret` (a generated one, or the customer's own);
    /// the old one keeps signing `webhook-signature` for [`OLD_SECRET_VALID_MS`]. Returns the
    /// integration and until when (Unix ms) the old secret is valid; `None` without an integration.
    pub async fn replace_secret(
        &self,
        account: &AccountId,
        secret: &SigningSecret,
    ) -> Result<Option<(Integration, i64)>, StoreError> {
        let until = now_ms() + OLD_SECRET_VALID_MS;
        let rotated = self.store.rotate_signing_secret(account, secret, until).await;
        self.forget_integration(account);
        Ok(rotated?.map(|integration| (integration, until)))
    }

    /// [`Service::save_integration`] signing with `secret`, one the customer brought (from SIPSIM,
    /// so that its receivers keep verifying): a new integration starts with it; an existing one's
    /// secret is replaced as a regeneration replaces it, the old one overlapping for a day.
    pub async fn save_integration_with_secret(
        &self,
        account: &AccountId,
        update: IntegrationUpdate,
        secret: SigningSecret,
    ) -> Result<(Integration, bool), StoreError> {
        let update = IntegrationUpdate { new_signing_secret: secret.clone(), ..update };
        let (saved, created) = self.save_integration(account, update).await?;
        if created || saved.signing_secret == secret {
            return Ok((saved, created));
        }
        match self.replace_secret(account, &secret).await? {
            Some((replaced, _)) => Ok((replaced, false)),
            // Removed in between by someone else: what was saved is gone too.
            None => Err(StoreError::Corrupt("the integration was removed while saving it".into())),
        }
    }

    /// Sets (or removes) the integration's maximum delivery rate; `None` without an integration.
    /// The dispatchers read the rates every second.
    pub async fn set_delivery_rate(
        &self,
        account: &AccountId,
        rate: Option<DeliveryRate>,
    ) -> Result<Option<Integration>, StoreError> {
        let set = self.store.set_delivery_rate(account, rate).await;
        self.forget_integration(account);
        set
    }

    /// Ends a pause, delivering or dropping the events kept meanwhile; `None` if it was not
    /// paused, otherwise how many were kept.
    pub async fn resume_integration(
        &self,
        account: &AccountId,
        kept: KeptDeliveries,
    ) -> Result<Option<u64>, StoreError> {
        let resumed = self.store.resume_integration(account, kept, now_ms()).await;
        self.forget_integration(account);
        let resumed = resumed?;
        if resumed.is_some_and(|n| n > 0) && kept == KeptDeliveries::Deliver {
            self.wake();
        }
        Ok(resumed)
    }
}
