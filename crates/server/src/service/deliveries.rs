//! Sending deliveries again: one, or every failed one of a period. Both wake this node's
//! dispatcher; the other nodes hear of it from the database.

use sipsim_core::clock::now_ms;
use sipsim_core::event::Event;
use sipsim_core::queue::DeliveryRecord;
use sipsim_core::{AccountId, DeliveryId, StoreError};

use super::Service;

/// The most deliveries one "resend every failed one" queues.
pub const RESEND_AT_ONCE: u32 = 10_000;

/// Why a delivery was not sent again.
#[derive(Debug, thiserror::Error)]
pub enum ResendRefused {
    /// The account has no such delivery (or the id is another account's).
    #[error("no such delivery")]
    NotFound,
    /// A *Send Test* delivery: those are never queued; a new test is sent instead.
    #[error("Test deliveries are not resent: use Send Test to send a new one.")]
    TestEvent,
    /// The account has no integration to send it to.
    #[error("no webhook integration")]
    NoIntegration,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Service<'_> {
    /// `account`'s delivery `id`, if it is the account's.
    pub async fn own_delivery(
        &self,
        account: &AccountId,
        id: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        Ok(self.store.get_delivery(id).await?.filter(|d| &d.account_id == account))
    }

    /// Queues `account`'s delivery `id` again as a new delivery (same message, same
    /// `X-Webhook-Id`), due now; returns the new one. Refused for another account's delivery, a
    /// test delivery, and an account without integration, in that order.
    pub async fn resend(
        &self,
        account: &AccountId,
        id: &DeliveryId,
    ) -> Result<DeliveryRecord, ResendRefused> {
        let original = self.own_delivery(account, id).await?.ok_or(ResendRefused::NotFound)?;
        if original.event == Event::Test {
            return Err(ResendRefused::TestEvent);
        }
        if self.store.get_integration(account).await?.is_none() {
            return Err(ResendRefused::NoIntegration);
        }
        let created = self
            .store
            .resend(account, id, now_ms())
            .await?
            // Deleted between the two reads (retention): as if it never was.
            .ok_or(ResendRefused::NotFound)?;
        self.wake();
        Ok(created)
    }

    /// Queues again every message of `account` created since `since_ms` whose latest delivery
    /// failed, at most [`RESEND_AT_ONCE`]; returns how many.
    pub async fn resend_failed_since(
        &self,
        account: &AccountId,
        since_ms: i64,
    ) -> Result<u64, StoreError> {
        let queued =
            self.store.resend_failed_since(account, since_ms, now_ms(), RESEND_AT_ONCE).await?;
        if queued > 0 {
            self.wake();
        }
        Ok(queued)
    }
}
