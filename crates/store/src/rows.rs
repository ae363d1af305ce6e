//! Reading rows back into domain types, once for both backends.
//!
//! The two backends store the same columns with the same meanings (text ids, Unix-ms integers, byte
//! blobs), so each mapper is written once against [`Columns`], which both row types implement.

use sipsim_core::cipher::{SecretCipher, SecretSlot, StoredSecret, unseal};
use sipsim_core::event::Event;
use sipsim_core::queue::{
    AttemptRecord, ChainLink, ClaimedDelivery, Completion, DeliveryRecord, DeliveryStatus,
};
use sipsim_core::secret::{SecretHash, SigningSecret};
use sipsim_core::store::{
    Account, ApiClient, AttemptBucket, DeliveryRate, Integration, IntegrationState, QueueStats,
    Revocation,
};
use sipsim_core::target::WebhookUrl;
use sipsim_core::{AccountId, ClientId, DeliveryId, EventSet, MessageId, ScopeSet, StoreError};
use sqlx::Row;

use crate::backend;

/// Typed column access by position, the same on every backend.
pub trait Columns {
    fn text(&self, i: usize) -> Result<String, StoreError>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, i: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError>;
    fn float(&self, i: usize) -> Result<f64, StoreError>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, i: usize) -> Result<String, StoreError> {
                self.try_get(i).map_err(backend)
            }
            fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
                self.try_get(i).map_err(backend)
            }
            fn int(&self, i: usize) -> Result<i64, StoreError> {
                self.try_get(i).map_err(backend)
            }
            fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
                self.try_get(i).map_err(backend)
            }
            fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
                self.try_get(i).map_err(backend)
            }
            fn float(&self, i: usize) -> Result<f64, StoreError> {
                self.try_get(i).map_err(backend)
            }
        }
    };
}

columns_for!(sqlx::sqlite::SqliteRow);
columns_for!(sqlx::postgres::PgRow);

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Where a signing secret is stored, bound into its ciphertext so it cannot be moved to another row.
pub(crate) fn secret_context(account: &AccountId) -> String {
    SecretSlot::SigningSecret(account.clone()).context()
}

/// The statement that rewrites one secret where it still holds what was read; it binds the new
/// stored form, the slot's key (account or setting name) and the old stored form, as `$1`–`$3`.
pub(crate) fn rewrite_secret_sql(slot: &SecretSlot) -> (&'static str, String) {
    match slot {
        SecretSlot::SigningSecret(account) => (
            "UPDATE integrations SET signing_secret = $1 WHERE account_id = $2 AND signing_secret = $3",
            account.to_string(),
        ),
        SecretSlot::PreviousSigningSecret(account) => (
            "UPDATE integrations SET previous_signing_secret = $1 \
             WHERE account_id = $2 AND previous_signing_secret = $3",
            account.to_string(),
        ),
        SecretSlot::Setting(name) => {
            ("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3", name.clone())
        }
    }
}

/// Reads what [`STORED_SECRETS_SQL`] returns: `(kind, key, value)` rows.
pub(crate) fn stored_secret(row: &impl Columns) -> Result<StoredSecret, StoreError> {
    let (kind, key) = (row.text(0)?, row.text(1)?);
    let account = || AccountId::parse(&key).map_err(corrupt);
    let slot = match kind.as_str() {
        "current" => SecretSlot::SigningSecret(account()?),
        "previous" => SecretSlot::PreviousSigningSecret(account()?),
        _ => SecretSlot::Setting(key),
    };
    Ok(StoredSecret { slot, stored: row.text(2)? })
}

/// Every stored secret as `(kind, key, value)`; the same text in both dialects.
pub(crate) const STORED_SECRETS_SQL: &str = "\
    SELECT 'current', account_id, signing_secret FROM integrations \
    UNION ALL SELECT 'previous', account_id, previous_signing_secret FROM integrations \
        WHERE previous_signing_secret IS NOT NULL \
    UNION ALL SELECT 'setting', key, value FROM settings \
        WHERE key IN ('jwt_hs256_key', 'encryption_canary')";

/// A stored secret that this node's key cannot open.
fn unreadable(e: sipsim_core::cipher::CipherError) -> StoreError {
    StoreError::SecretUnreadable(e.to_string())
}

/// Columns of `integrations` in the order [`integration`] reads them.
pub(crate) const INTEGRATION_COLUMNS: &str = "account_id, webhook_url, state, event_mask, \
                                              signing_secret, version, created_at, updated_at, \
                                              paused_reason, previous_signing_secret, \
                                              previous_secret_expires_at, max_rate_milli";

/// Columns of `api_clients` in the order [`client`] reads them.
pub(crate) const CLIENT_COLUMNS: &str =
    "id, account_id, name, scopes, secret_hash, created_at, last_used_at";

/// Columns of `deliveries` in the order [`delivery`] reads them.
pub(crate) const DELIVERY_COLUMNS: &str = "id, message_id, account_id, event, status, attempts, \
                                           next_attempt_at, last_status_code, last_error, created_at";

/// Columns of `delivery_attempts` in the order [`attempt`] reads them.
pub(crate) const ATTEMPT_COLUMNS: &str =
    "started_at, duration_ms, status_code, error, response_snippet";

/// An integration's state, stored as its name in column `i`.
pub(crate) fn integration_state(
    row: &impl Columns,
    i: usize,
) -> Result<IntegrationState, StoreError> {
    let state = row.text(i)?;
    IntegrationState::parse(&state).ok_or_else(|| corrupt(format!("integration state '{state}'")))
}

pub(crate) fn integration(
    row: &impl Columns,
    cipher: Option<&SecretCipher>,
) -> Result<Integration, StoreError> {
    let account_id = AccountId::parse(&row.text(0)?).map_err(corrupt)?;
    let context = secret_context(&account_id);
    let secret = unseal(cipher, &row.text(4)?, &context).map_err(unreadable)?;
    let previous_signing_secret = match (row.opt_text(9)?, row.opt_int(10)?) {
        (Some(sealed), Some(until)) => Some((
            SigningSecret::from_stored(unseal(cipher, &sealed, &context).map_err(unreadable)?),
            until,
        )),
        _ => None,
    };
    Ok(Integration {
        account_id,
        webhook_url: WebhookUrl::from_stored(row.text(1)?),
        state: integration_state(row, 2)?,
        events: EventSet::from_bits_truncate(row.int(3)?),
        signing_secret: SigningSecret::from_stored(secret),
        version: row.int(5)?,
        created_at_ms: row.int(6)?,
        updated_at_ms: row.int(7)?,
        paused_reason: row.opt_text(8)?,
        previous_signing_secret,
        max_rate: match row.opt_int(11)? {
            Some(milli) => Some(
                DeliveryRate::from_milli(milli)
                    .ok_or_else(|| corrupt(format!("delivery rate {milli}")))?,
            ),
            None => None,
        },
    })
}

pub(crate) fn client(row: &impl Columns) -> Result<ApiClient, StoreError> {
    let scopes = row.text(3)?;
    Ok(ApiClient {
        id: ClientId::parse(&row.text(0)?).map_err(corrupt)?,
        account_id: AccountId::parse(&row.text(1)?).map_err(corrupt)?,
        name: row.text(2)?,
        scopes: ScopeSet::parse_list(&scopes).map_err(|s| corrupt(format!("scope '{s}'")))?,
        secret_hash: SecretHash::from_bytes(&row.bytes(4)?)
            .ok_or_else(|| corrupt("client secret hash length"))?,
        created_at_ms: row.int(5)?,
        last_used_at_ms: row.opt_int(6)?,
    })
}

/// `id, name, created_at`.
pub(crate) fn account(row: &impl Columns) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::parse(&row.text(0)?).map_err(corrupt)?,
        name: row.text(1)?,
        created_at_ms: row.int(2)?,
    })
}

/// `seq, client_id`.
pub(crate) fn revocation(row: &impl Columns) -> Result<Revocation, StoreError> {
    Ok(Revocation { seq: row.int(0)?, client_id: ClientId::parse(&row.text(1)?).map_err(corrupt)? })
}

pub(crate) fn delivery(row: &impl Columns) -> Result<DeliveryRecord, StoreError> {
    let event = row.text(3)?;
    let status = row.text(4)?;
    Ok(DeliveryRecord {
        id: DeliveryId::parse(&row.text(0)?).map_err(corrupt)?,
        message_id: MessageId::parse(&row.text(1)?).map_err(corrupt)?,
        account_id: AccountId::parse(&row.text(2)?).map_err(corrupt)?,
        event: Event::from_name(&event).ok_or_else(|| corrupt(format!("event '{event}'")))?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("delivery status '{status}'")))?,
        attempts: row.int(5)?.max(0) as u32,
        next_attempt_at_ms: row.opt_int(6)?,
        last_status_code: row.opt_int(7)?.and_then(|c| u16::try_from(c).ok()),
        last_error: row.opt_text(8)?,
        created_at_ms: row.int(9)?,
    })
}

pub(crate) fn attempt(row: &impl Columns) -> Result<AttemptRecord, StoreError> {
    Ok(AttemptRecord {
        started_at_ms: row.int(0)?,
        duration_ms: row.int(1)?,
        status_code: row.opt_int(2)?.and_then(|c| u16::try_from(c).ok()),
        error: row.opt_text(3)?,
        response_snippet: row.opt_text(4)?,
    })
}

/// Columns a claim reads, in the order [`claimed`] reads them (`d` deliveries, `m` messages,
/// `i` integrations).
pub(crate) const CLAIMED_COLUMNS: &str = "d.id, d.message_id, d.account_id, m.event, m.body, \
                                          d.attempts, i.webhook_url, i.signing_secret, \
                                          i.previous_signing_secret, i.previous_secret_expires_at, \
                                          d.ordering_key, d.seq";

/// The due time of a `deliveries` row whose lease ends unsent (handed back, or expired), for an
/// `UPDATE deliveries SET next_attempt_at = …`: an unordered one gets `unordered`; one of a chain
/// gets `head` if no earlier delivery of its chain is unfinished, and otherwise waits (NULL) for its
/// predecessor to end — a train's deliveries go back behind their head. Both are SQL fragments (a
/// placeholder, a column, an expression).
pub(crate) fn due_unless_waiting(unordered: &str, head: &str) -> String {
    format!(
        "CASE WHEN deliveries.ordering_key IS NULL THEN {unordered} \
              WHEN EXISTS (SELECT 1 FROM deliveries x \
                           WHERE x.ordering_key IS NOT NULL \
                             AND x.account_id = deliveries.account_id \
                             AND x.ordering_key = deliveries.ordering_key \
                             AND x.seq < deliveries.seq \
                             AND x.status IN ('pending', 'delivering', 'paused')) THEN NULL \
              ELSE {head} END"
    )
}

/// Why a claimed row could not be handed out.
pub(crate) enum ClaimError {
    /// The signing secret cannot be opened (wrong or missing key): the delivery id and why.
    Secret(String, String),
    /// Anything else.
    Store(StoreError),
}

impl From<StoreError> for ClaimError {
    fn from(e: StoreError) -> Self {
        ClaimError::Store(e)
    }
}

/// A claimed row; the previous signing secret comes along only while it is valid at `now`.
pub(crate) fn claimed(
    row: &impl Columns,
    token: &str,
    cipher: Option<&SecretCipher>,
    now: i64,
) -> Result<ClaimedDelivery, ClaimError> {
    let id = row.text(0)?;
    let account_id = AccountId::parse(&row.text(2)?).map_err(corrupt)?;
    let event = row.text(3)?;
    let context = secret_context(&account_id);
    let secret = unseal(cipher, &row.text(7)?, &context)
        .map_err(|e| ClaimError::Secret(id.clone(), e.to_string()))?;
    let previous = match (row.opt_text(8)?, row.opt_int(9)?) {
        (Some(sealed), Some(until)) if until > now => Some(SigningSecret::from_stored(
            unseal(cipher, &sealed, &context)
                .map_err(|e| ClaimError::Secret(id.clone(), e.to_string()))?,
        )),
        _ => None,
    };
    Ok(ClaimedDelivery {
        id: DeliveryId::parse(&id).map_err(corrupt)?,
        message_id: MessageId::parse(&row.text(1)?).map_err(corrupt)?,
        account_id,
        event: Event::from_name(&event).ok_or_else(|| corrupt(format!("event '{event}'")))?,
        body: row.bytes(4)?,
        attempt: row.int(5)?.max(1) as u32,
        lease_token: token.to_owned(),
        webhook_url: row.text(6)?,
        signing_secret: SigningSecret::from_stored(secret),
        previous_signing_secret: previous,
        chain: match (row.opt_text(10)?, row.opt_int(11)?) {
            (Some(key), Some(seq)) => Some(ChainLink { key, seq }),
            _ => None,
        },
    })
}

/// A fresh lease token.
pub(crate) fn lease_token() -> String {
    format!("lease_{}", MessageId::generate().as_str().trim_start_matches("msg_"))
}

/// How long an idempotency key is remembered.
pub(crate) const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Columns of `users` in the order [`user`] reads them, prefixed `u.`.
pub(crate) const USER_COLUMNS: &str = "u.id, u.account_id, u.email, u.password_hash, u.created_at";

/// Columns of `sessions` in the order [`session`] reads them (after the user's), prefixed `s.`.
pub(crate) const SESSION_COLUMNS: &str = "s.token_hash, s.user_id, s.csrf_token, s.expires_at";

pub(crate) fn user(row: &impl Columns) -> Result<sipsim_core::store::User, StoreError> {
    Ok(sipsim_core::store::User {
        id: sipsim_core::UserId::parse(&row.text(0)?).map_err(corrupt)?,
        account_id: AccountId::parse(&row.text(1)?).map_err(corrupt)?,
        email: row.text(2)?,
        password_hash: row.text(3)?,
        created_at_ms: row.int(4)?,
    })
}

/// A session whose columns follow the user's five.
pub(crate) fn session(row: &impl Columns) -> Result<sipsim_core::store::Session, StoreError> {
    Ok(sipsim_core::store::Session {
        token_hash: SecretHash::from_bytes(&row.bytes(5)?)
            .ok_or_else(|| corrupt("session token hash length"))?,
        user_id: sipsim_core::UserId::parse(&row.text(6)?).map_err(corrupt)?,
        csrf_token: row.text(7)?,
        expires_at_ms: row.int(8)?,
    })
}

/// Whether a database error is a unique-constraint violation (the same on both backends).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// An attempt bucket from `(start, attempts, succeeded, mean duration, max duration)`.
pub(crate) fn attempt_bucket(row: &impl Columns) -> Result<AttemptBucket, StoreError> {
    Ok(AttemptBucket {
        start_ms: row.int(0)?,
        attempts: row.int(1)?.max(0) as u64,
        succeeded: row.int(2)?.max(0) as u64,
        mean_ms: row.float(3)?.round() as i64,
        max_ms: row.int(4)?,
    })
}

/// `pending, due, oldest due, in flight, paused integrations`, as both backends' stats query reads.
pub(crate) fn queue_stats(row: &impl Columns) -> Result<QueueStats, StoreError> {
    let count = |i: usize| row.int(i).map(|n| u64::try_from(n).unwrap_or(0));
    Ok(QueueStats {
        pending: count(0)?,
        due: count(1)?,
        oldest_due_ms: row.opt_int(2)?,
        in_flight: count(3)?,
        paused_integrations: count(4)?,
    })
}

/// How a batch of results moves an integration's `failing_since` (how long every attempt to it has
/// failed, for the automatic pause): the same end state as applying them one by one, where a success
/// clears it and a failure sets it if unset.
#[derive(Clone, Copy)]
pub(crate) enum Failing {
    /// Set it to this (a success came; then perhaps a failure at this time).
    Since(Option<i64>),
    /// Only failures: set it to the first one's time unless already set.
    SinceIfUnset(i64),
}

impl Failing {
    pub(crate) fn after(before: Option<Failing>, completion: Completion, at: i64) -> Failing {
        match (before, completion) {
            (_, Completion::Succeeded) => Failing::Since(None),
            (None, _) => Failing::SinceIfUnset(at),
            (Some(Failing::Since(None)), _) => Failing::Since(Some(at)),
            (Some(kept), _) => kept,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_secret_settings_read_are_the_ones_core_names() {
        for key in sipsim_core::cipher::SECRET_SETTINGS {
            assert!(super::STORED_SECRETS_SQL.contains(&format!("'{key}'")), "{key}");
        }
        assert_eq!(super::STORED_SECRETS_SQL.matches("', '").count() + 1, 2);
    }
}
