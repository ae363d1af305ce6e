//! The rules of what users change — their integration, API clients, dashboard users, deliveries —
//! and the side effects each change has on this node, written once. The API, the dashboard, the
//! operator commands and the demo are adapters over it: they parse their input, call a service
//! and render the answer; none of them touches the cache, the dispatcher's wake-up or the
//! revocation list itself.
//!
//! Depends on the store and this node's in-memory views only, never on HTTP.

pub mod clients;
pub mod deliveries;
pub mod integrations;
pub mod users;

use sipsim_core::Store;
use tokio::sync::Notify;

use crate::auth::revocations::Revocations;
use crate::integrations::IntegrationCache;

/// This node's in-memory views that a change must update at once, so that its next answer (or
/// delivery) already sees it.
#[derive(Clone, Copy)]
pub struct Local<'a> {
    /// Cached integrations: dropped when one changes.
    pub integrations: &'a IntegrationCache,
    /// This node's dispatcher: woken when deliveries become due.
    pub wake: &'a Notify,
    /// Deleted clients: a deleted client's tokens are refused at once.
    pub revocations: &'a Revocations,
}

/// The services over one store. A serving node has [`Local`] views; a process that serves nothing
/// (an operator command) has none, and the serving nodes notice its changes through the database:
/// the settings version their caches compare, the revocation log they replay every few seconds,
/// and their next look for due work.
#[derive(Clone, Copy)]
pub struct Service<'a> {
    store: &'a dyn Store,
    local: Option<Local<'a>>,
}

impl<'a> Service<'a> {
    /// Services for a serving node.
    pub fn on_node(store: &'a dyn Store, local: Local<'a>) -> Self {
        Service { store, local: Some(local) }
    }

    /// Services for a process that serves nothing.
    pub fn offline(store: &'a dyn Store) -> Self {
        Service { store, local: None }
    }

    /// The store.
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// Drops this node's cached copy of `account`'s integration.
    fn forget_integration(&self, account: &sipsim_core::AccountId) {
        if let Some(local) = self.local {
            local.integrations.forget(account);
        }
    }

    /// Wakes this node's dispatcher: deliveries became due.
    fn wake(&self) {
        if let Some(local) = self.local {
            local.wake.notify_one();
        }
    }
}
