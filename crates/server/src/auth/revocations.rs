//! The in-memory list of deleted API clients, so tokens are checked without a database read yet a
//! deleted client's tokens stop working on every node within seconds.
//!
//! Each node replays the store's append-only revocation log: everything at start, then what is new
//! every [`REFRESH_EVERY`]. A deletion made through this process is applied at once as well.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

use sipsim_core::{ClientId, Store, StoreError};
use tokio::sync::Mutex;

/// How often the log is polled. DESIGN.md asks for ≤ 2 s; the contract for deletion is 5 s.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Deleted clients known to this node.
#[derive(Debug, Default)]
pub struct Revocations {
    revoked: RwLock<HashSet<ClientId>>,
    /// Position in the log read so far; the lock also keeps two refreshes from interleaving.
    last_seq: Mutex<i64>,
}

impl Revocations {
    /// Whether tokens of `client` must be refused.
    pub fn is_revoked(&self, client: &ClientId) -> bool {
        // A poisoned lock only means a panic happened while inserting; the set is still usable.
        self.revoked.read().unwrap_or_else(|e| e.into_inner()).contains(client)
    }

    /// Marks `client` revoked on this node immediately.
    pub fn revoke(&self, client: ClientId) {
        self.revoked.write().unwrap_or_else(|e| e.into_inner()).insert(client);
    }

    /// Reads the log entries this node has not seen yet.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut last = self.last_seq.lock().await;
        let new = store.revocations_after(*last).await?;
        if let Some(tail) = new.last() {
            *last = tail.seq;
            let mut set = self.revoked.write().unwrap_or_else(|e| e.into_inner());
            set.extend(new.into_iter().map(|r| r.client_id));
        }
        Ok(())
    }
}
