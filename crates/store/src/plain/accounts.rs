//! Accounts and their API clients, with the revocation log that deleting a client appends to.

use async_trait::async_trait;
use sipsim_core::clock::now_ms;
use sipsim_core::store::{Account, Accounts, ApiClient, Clients, NewApiClient, Revocation};
use sipsim_core::{AccountId, ClientId, StoreError};
use sqlx::AssertSqlSafe;

use super::{Backend, Exec as _, Notice, SqlStore, Turn, ensure_account};
use crate::backend;
use crate::rows::{self, CLIENT_COLUMNS};

#[async_trait]
impl<B: Backend> Accounts for SqlStore<B> {
    async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        let account =
            Account { id: AccountId::generate(), name: name.to_owned(), created_at_ms: now_ms() };
        self.write_run(
            "INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)",
            &[
                account.id.as_str().into(),
                account.name.as_str().into(),
                account.created_at_ms.into(),
            ],
        )
        .await?;
        Ok(account)
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.read_one(
            "SELECT id, name, created_at FROM accounts WHERE id = $1",
            &[id.as_str().into()],
            rows::account,
        )
        .await
    }

    async fn set_retention(
        &self,
        id: &AccountId,
        retention_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let changed = self
            .write_run(
                "UPDATE accounts SET retention_ms = $2 WHERE id = $1",
                &[id.as_str().into(), retention_ms.into()],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        // Its clients' tokens are revoked as for one client (see delete_client).
        B::take_turn(&mut tx, Turn::RevocationLog).await?;
        let revoked = tx
            .run(
                "INSERT INTO client_revocations (client_id, revoked_at) \
                 SELECT id, $2 FROM api_clients WHERE account_id = $1",
                &[id.as_str().into(), now_ms().into()],
            )
            .await
            .map_err(backend)?;
        tx.run("DELETE FROM idempotency_keys WHERE account_id = $1", &[id.as_str().into()])
            .await
            .map_err(backend)?;
        // Clients, integration, users and sessions, messages, deliveries and attempts cascade.
        let deleted = tx
            .run("DELETE FROM accounts WHERE id = $1", &[id.as_str().into()])
            .await
            .map_err(backend)?
            > 0;
        if revoked > 0 {
            B::notify(&mut tx, Notice::Revoked).await?;
        }
        tx.commit().await.map_err(backend)?;
        self.scrub(deleted).await?;
        Ok(deleted)
    }
}

#[async_trait]
impl<B: Backend> Clients for SqlStore<B> {
    async fn create_client(&self, new: NewApiClient) -> Result<ApiClient, StoreError> {
        let client = ApiClient {
            id: ClientId::generate(),
            account_id: new.account_id,
            name: new.name,
            scopes: new.scopes,
            secret_hash: new.secret_hash,
            created_at_ms: now_ms(),
            last_used_at_ms: None,
        };
        let mut tx = self.begin_write().await?;
        ensure_account(&mut *tx, &client.account_id).await?;
        tx.run(
            "INSERT INTO api_clients (id, account_id, name, scopes, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                client.id.as_str().into(),
                client.account_id.as_str().into(),
                client.name.as_str().into(),
                client.scopes.to_string().as_str().into(),
                client.secret_hash.as_bytes()[..].into(),
                client.created_at_ms.into(),
            ],
        )
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(client)
    }

    async fn get_client(&self, id: &ClientId) -> Result<Option<ApiClient>, StoreError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM api_clients WHERE id = $1");
        self.read_one(AssertSqlSafe(sql), &[id.as_str().into()], rows::client).await
    }

    async fn list_clients(&self, account: &AccountId) -> Result<Vec<ApiClient>, StoreError> {
        let sql = format!(
            "SELECT {CLIENT_COLUMNS} FROM api_clients WHERE account_id = $1 ORDER BY created_at, id"
        );
        self.all_rows(AssertSqlSafe(sql), &[account.as_str().into()], rows::client).await
    }

    async fn delete_client(&self, id: &ClientId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        B::take_turn(&mut tx, Turn::RevocationLog).await?;
        let deleted = tx
            .run("DELETE FROM api_clients WHERE id = $1", &[id.as_str().into()])
            .await
            .map_err(backend)?
            > 0;
        if deleted {
            tx.run(
                "INSERT INTO client_revocations (client_id, revoked_at) VALUES ($1, $2)",
                &[id.as_str().into(), now_ms().into()],
            )
            .await
            .map_err(backend)?;
            B::notify(&mut tx, Notice::Revoked).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(deleted)
    }

    async fn record_client_use(&self, id: &ClientId, at_ms: i64) -> Result<(), StoreError> {
        self.write_run(
            "UPDATE api_clients SET last_used_at = $2 WHERE id = $1",
            &[id.as_str().into(), at_ms.into()],
        )
        .await?;
        Ok(())
    }

    async fn revocations_after(&self, seq: i64) -> Result<Vec<Revocation>, StoreError> {
        self.all_rows(
            "SELECT seq, client_id FROM client_revocations WHERE seq > $1 ORDER BY seq",
            &[seq.into()],
            rows::revocation,
        )
        .await
    }
}
