//! Dashboard users and sessions; the server's own settings and every stored secret; readiness
//! probes.

use async_trait::async_trait;
use sipsim_core::cipher::{SecretRewrite, StoredSecret};
use sipsim_core::clock::now_ms;
use sipsim_core::secret::SecretHash;
use sipsim_core::store::{Health, Secrets, Session, User, Users};
use sipsim_core::{AccountId, StoreError, UserId};
use sqlx::AssertSqlSafe;

use super::{Backend, Exec as _, SqlStore, ensure_account};
use crate::backend;
use crate::rows::{self, Columns as _, SESSION_COLUMNS, USER_COLUMNS, corrupt};

#[async_trait]
impl<B: Backend> Users for SqlStore<B> {
    async fn create_user(
        &self,
        account: &AccountId,
        email: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let user = User {
            id: UserId::generate(),
            account_id: account.clone(),
            email: email.trim().to_lowercase(),
            password_hash: password_hash.to_owned(),
            created_at_ms: now_ms(),
        };
        let mut tx = self.begin_write().await?;
        ensure_account(&mut *tx, account).await?;
        tx.run(
            "INSERT INTO users (id, account_id, email, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                user.id.as_str().into(),
                user.account_id.as_str().into(),
                user.email.as_str().into(),
                user.password_hash.as_str().into(),
                user.created_at_ms.into(),
            ],
        )
        .await
        .map_err(|e| {
            if rows::is_unique_violation(&e) { StoreError::EmailTaken } else { backend(e) }
        })?;
        tx.commit().await.map_err(backend)?;
        Ok(user)
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = $1");
        let email = email.trim().to_lowercase();
        self.read_one(AssertSqlSafe(sql), &[email.as_str().into()], rows::user).await
    }

    async fn list_users(&self, account: &AccountId) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.account_id = $1 ORDER BY u.created_at, u.id"
        );
        self.all_rows(AssertSqlSafe(sql), &[account.as_str().into()], rows::user).await
    }

    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        self.write_run(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) \
             VALUES ($1, $2, $3, $4)",
            &[
                session.token_hash.as_bytes()[..].into(),
                session.user_id.as_str().into(),
                session.csrf_token.as_str().into(),
                session.expires_at_ms.into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_session(
        &self,
        token_hash: &SecretHash,
        now_ms: i64,
    ) -> Result<Option<(Session, User)>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, {SESSION_COLUMNS} FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2"
        );
        self.read_one(AssertSqlSafe(sql), &[token_hash.as_bytes()[..].into(), now_ms.into()], |r| {
            Ok((rows::session(r)?, rows::user(r)?))
        })
        .await
    }

    async fn delete_session(&self, token_hash: &SecretHash) -> Result<bool, StoreError> {
        let deleted = self
            .write_run(
                "DELETE FROM sessions WHERE token_hash = $1",
                &[token_hash.as_bytes()[..].into()],
            )
            .await?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl<B: Backend> Secrets for SqlStore<B> {
    async fn setting_or_insert(&self, key: &str, candidate: &str) -> Result<String, StoreError> {
        let mut conn = self.write().await?;
        conn.run(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[key.into(), candidate.into()],
        )
        .await
        .map_err(backend)?;
        // Whichever node inserted first, every node reads the same row back — on the writer: a
        // read connection might not see a row another process just committed until its next
        // transaction (SQLite), and this runs once at start.
        conn.optional("SELECT value FROM settings WHERE key = $1", &[key.into()])
            .await
            .map_err(backend)?
            .ok_or_else(|| corrupt(format!("setting {key} vanished as it was written")))?
            .text(0)
    }

    async fn stored_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        self.all_rows(rows::STORED_SECRETS_SQL, &[], rows::stored_secret).await
    }

    async fn rewrite_secrets(&self, rewrites: &[SecretRewrite]) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        for rewrite in rewrites {
            let (sql, key) = rows::rewrite_secret_sql(&rewrite.was.slot);
            let changed = tx
                .run(
                    sql,
                    &[
                        rewrite.now.as_str().into(),
                        key.as_str().into(),
                        rewrite.was.stored.as_str().into(),
                    ],
                )
                .await
                .map_err(backend)?;
            if changed != 1 {
                // Changed since it was read (a regeneration, say): write nothing; the caller reads
                // again.
                return Ok(false);
            }
        }
        tx.commit().await.map_err(backend)?;
        // The secrets' earlier forms (in clear, or under the old key) must not stay in the files.
        self.scrub(true).await?;
        Ok(true)
    }
}

#[async_trait]
impl<B: Backend> Health for SqlStore<B> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read().await?.run("SELECT 1", &[]).await.map_err(backend)?;
        Ok(())
    }

    async fn write_probe(&self) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        let probe = "x".repeat(crate::PROBE_BYTES);
        conn.run(
            "INSERT INTO settings (key, value) VALUES ('write_probe', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[probe.as_str().into()],
        )
        .await
        .map_err(backend)?;
        conn.run("DELETE FROM settings WHERE key = 'write_probe'", &[]).await.map_err(backend)?;
        Ok(())
    }
}
