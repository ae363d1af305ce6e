//! Integrations cached in memory for the API's hot path (`GET /api/v2/webhooks` reads no database).
//!
//! Staleness is bounded three ways:
//! - a write made through this process forgets the account's entry before it answers, so a client
//!   sees its own change at once (enable, then list);
//! - every process's writes move the store's settings version (a trigger), which this node polls
//!   every [`POLL_EVERY`]; PostgreSQL also NOTIFYs, so other nodes usually hear at once;
//! - a read that raced with a forget does not put its (possibly older) answer in the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sipsim_core::store::Integration;
use sipsim_core::{AccountId, Store, StoreError};

/// How often the settings version is polled (changes made by another process show within this).
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// Entries kept before the cache starts over (bounds memory with very many accounts).
const MAX_ENTRIES: usize = 100_000;

/// Integrations by account (only those that exist).
#[derive(Debug, Default)]
pub struct IntegrationCache {
    entries: RwLock<HashMap<AccountId, Arc<Integration>>>,
    /// Moves on every forget or clear: a read that started before one must not fill the cache.
    epoch: AtomicU64,
    /// The store's settings version the entries were read under.
    version: AtomicI64,
}

impl IntegrationCache {
    /// A cache valid as of the store's `version`.
    pub fn new(version: i64) -> Self {
        IntegrationCache { version: AtomicI64::new(version), ..IntegrationCache::default() }
    }

    /// The account's integration, from memory when known.
    pub async fn get(
        &self,
        store: &dyn Store,
        account: &AccountId,
    ) -> Result<Option<Arc<Integration>>, StoreError> {
        if let Some(hit) = self.read().get(account) {
            return Ok(Some(hit.clone()));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let fresh = store.get_integration(account).await?.map(Arc::new);
        let mut entries = self.write();
        // "None yet" is not kept: an integration created by another process (the operator's
        // `integration set`, another node's dashboard) then serves at once, and an account
        // without one is not a hot path.
        if let Some(found) = &fresh
            && self.epoch.load(Ordering::Acquire) == epoch
        {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(account.clone(), found.clone());
        }
        Ok(fresh)
    }

    /// Drops the account's entry (this process just changed its integration).
    pub fn forget(&self, account: &AccountId) {
        let mut entries = self.write();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.remove(account);
    }

    /// Drops every entry when the store's settings version moved past the one they were read under.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let now = store.settings_version().await?;
        if now != self.version.load(Ordering::Acquire) {
            let mut entries = self.write();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            entries.clear();
            self.version.store(now, Ordering::Release);
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<AccountId, Arc<Integration>>> {
        // A poisoned lock only means a panic while inserting; the map is still usable.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<AccountId, Arc<Integration>>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}
