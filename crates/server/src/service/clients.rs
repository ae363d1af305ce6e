//! An account's API clients: creating one (its secret shown once, stored as a hash) and deleting
//! one (its tokens refused at once on this node, within seconds on the others).

use sipsim_core::secret::ClientSecret;
use sipsim_core::store::{ApiClient, NewApiClient};
use sipsim_core::{AccountId, ClientId, ScopeSet, StoreError};

use super::Service;

impl Service<'_> {
    /// Creates an API client of `account`; returns it and its secret, which exists nowhere else.
    pub async fn create_client(
        &self,
        account: &AccountId,
        name: String,
        scopes: ScopeSet,
    ) -> Result<(ApiClient, ClientSecret), StoreError> {
        let secret = ClientSecret::generate();
        let client = self
            .store
            .create_client(NewApiClient {
                account_id: account.clone(),
                name,
                scopes,
                secret_hash: secret.hash(),
            })
            .await?;
        Ok((client, secret))
    }

    /// Deletes client `id` if it belongs to `owner` (any account's for `None`, the operator);
    /// whether it did. Its tokens stop working.
    pub async fn delete_client(
        &self,
        owner: Option<&AccountId>,
        id: &ClientId,
    ) -> Result<bool, StoreError> {
        if let Some(owner) = owner {
            match self.store.get_client(id).await? {
                Some(client) if &client.account_id == owner => {}
                _ => return Ok(false),
            }
        }
        let deleted = self.store.delete_client(id).await?;
        if deleted && let Some(local) = self.local {
            local.revocations.revoke(id.clone());
        }
        Ok(deleted)
    }
}
