//! The delivery queue's types: what ingest writes, what a dispatcher claims, how an attempt ends.
//!
//! The queue is an outbox in the database: a message and its delivery row are written in one
//! transaction; a dispatcher claims due deliveries by setting a lease (committed *before* sending), and
//! completes them with a write fenced by the lease token, so a late worker whose lease expired cannot
//! overwrite a newer result. An expired lease makes the delivery claimable again.

use crate::event::Event;
use crate::{AccountId, DeliveryId, MessageId};

/// One event to store, already validated.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// Its event.
    pub event: Event,
    /// The exact request body every attempt will send.
    pub body: Vec<u8>,
    /// Deliveries sharing this key reach the account in order (`pbx_id` or `call_id`).
    pub ordering_key: Option<String>,
    /// A sender-chosen key: a repeat within 24 h is not stored again.
    pub idempotency_key: Option<String>,
}

/// Why a stored message got no delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The account has no webhook integration.
    NoIntegration,
    /// The integration was disabled by a user.
    Disabled,
    /// The integration is not subscribed to the event.
    NotSubscribed,
}

impl SkipReason {
    /// The text ingest answers with.
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoIntegration => "no integration",
            SkipReason::Disabled => "integration disabled",
            SkipReason::NotSubscribed => "not subscribed",
        }
    }
}

/// What ingest did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored, with a delivery due now.
    Enqueued {
        /// The message.
        message_id: MessageId,
        /// Its delivery.
        delivery_id: DeliveryId,
    },
    /// Stored without a delivery.
    Skipped {
        /// The message.
        message_id: MessageId,
        /// Why.
        reason: SkipReason,
    },
    /// The idempotency key was used within 24 h: nothing stored, the first message's id returned.
    Duplicate {
        /// The first message with this key.
        message_id: MessageId,
    },
}

impl IngestOutcome {
    /// The message id the caller gets back.
    pub fn message_id(&self) -> &MessageId {
        match self {
            IngestOutcome::Enqueued { message_id, .. }
            | IngestOutcome::Skipped { message_id, .. }
            | IngestOutcome::Duplicate { message_id } => message_id,
        }
    }
}

/// A delivery claimed for one attempt, with everything needed to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: DeliveryId,
    /// Its message (`X-Webhook-Id`).
    pub message_id: MessageId,
    /// The account.
    pub account_id: AccountId,
    /// The event.
    pub event: Event,
    /// The body to send.
    pub body: Vec<u8>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The lease's fencing token: completion must present it.
    pub lease_token: String,
    /// Where to send it (the integration's URL now, not at ingest).
    pub webhook_url: String,
    /// The integration's current signing secret.
    pub signing_secret: crate::secret::SigningSecret,
    /// The secret before the last regeneration, while it is still valid: `webhook-signature` then
    /// carries a signature with each.
    pub previous_signing_secret: Option<crate::secret::SigningSecret>,
    /// Its place in its call's chain, if it has an ordering key.
    pub chain: Option<ChainLink>,
}

/// A delivery's place in its call's chain: deliveries sharing an ordering key go out one at a time,
/// in `seq` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The ordering key (`pbx_id`, or `call_id:N`).
    pub key: String,
    /// Its number in the chain, from 1, in ingest order.
    pub seq: i64,
}

/// Most deliveries of one chain a claim hands out together: the chain's head and the waiting
/// deliveries right behind it (a *train*), all under the claim's lease. The dispatcher sends them one
/// after the other, each as soon as the previous one has succeeded (or failed for good), so a call's
/// backlog drains at the receiver's pace instead of one event per database round trip; what it does
/// not send it hands back, and they wait for their turn again.
pub const TRAIN_LEN: i64 = 16;

/// How a claim shares a dispatcher's free slots between accounts: each account may be given at most
/// its limit of deliveries in flight at once — `per_account`, or the lower limit `lowered` lists for
/// it (adaptive concurrency: an endpoint that times out, errors or slows down gets fewer slots) — of
/// which `in_use` lists those it already has. A claim never brings an account more than its free
/// slots, and it visits the accounts with due work in turn (round robin), so one account's backlog
/// cannot crowd the others out of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shares {
    /// Most deliveries (trains count as one) of one account in flight at once.
    pub per_account: u32,
    /// The accounts with deliveries in flight, and how many each.
    pub in_use: Vec<(AccountId, u32)>,
    /// The accounts whose limit is below `per_account` for now, and their limit (at least 1).
    pub lowered: Vec<(AccountId, u32)>,
}

impl Shares {
    /// No per-account bound: for tools and tests that claim without a dispatcher.
    pub const UNLIMITED: Shares = Shares::uniform(u32::MAX, Vec::new());

    /// Every account may have `per_account` in flight; `in_use` are those in flight now.
    pub const fn uniform(per_account: u32, in_use: Vec<(AccountId, u32)>) -> Shares {
        Shares { per_account, in_use, lowered: Vec::new() }
    }

    /// Most deliveries `account` may have in flight at once now.
    pub fn limit(&self, account: &AccountId) -> u32 {
        self.lowered
            .iter()
            .find(|(a, _)| a == account)
            .map_or(self.per_account, |(_, n)| (*n).clamp(1, self.per_account))
    }

    /// How many more deliveries `account` may be given now.
    pub fn free(&self, account: &AccountId) -> u32 {
        let used = self.in_use.iter().find(|(a, _)| a == account).map_or(0, |(_, n)| *n);
        self.limit(account).saturating_sub(used)
    }

    /// How many accounts are using all their slots.
    pub fn full_accounts(&self) -> usize {
        self.in_use.iter().filter(|(a, n)| *n >= self.limit(a)).count()
    }

    /// Whether some account is using all its slots (due work of it may be waiting for one).
    pub fn any_full(&self) -> bool {
        self.full_accounts() > 0
    }
}

/// What happened on one attempt, as recorded in the attempt log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt started, Unix ms.
    pub started_at_ms: i64,
    /// How long it took, ms.
    pub duration_ms: i64,
    /// The HTTP status, if a response came.
    pub status_code: Option<u16>,
    /// What went wrong, if it did (timeout, connection refused, blocked target, …).
    pub error: Option<String>,
    /// The first KiB of the response body.
    pub response_snippet: Option<String>,
}

/// How a claimed delivery ends its attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// A 2xx arrived: done.
    Succeeded,
    /// Failed; try again at this time (Unix ms).
    RetryAt(i64),
    /// Failed, and no attempt is left.
    Failed,
    /// The endpoint is gone (410): the delivery is kept, paused with its integration.
    Paused,
}

/// A finished attempt, ready to be recorded: what [`crate::Store::complete`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedAttempt {
    /// The delivery.
    pub id: DeliveryId,
    /// The lease it was claimed under.
    pub lease_token: String,
    /// What happened.
    pub record: AttemptRecord,
    /// How the delivery goes on.
    pub completion: Completion,
}

/// What recording a group of attempt results did: what [`crate::Store::complete`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completed {
    /// For each result, in order, whether it was applied: false when its lease had expired and
    /// the delivery was claimed again (the result is dropped, not logged).
    pub applied: Vec<bool>,
    /// How many waiting deliveries became due because the delivery ahead of them in their call
    /// ended: when none did, there is nothing new for a dispatcher to claim.
    pub released: u64,
}

/// A delivery's state (`GET /api/v2/webhook-deliveries` items will come from this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Claimed by a dispatcher.
    Delivering,
    /// A 2xx arrived.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// Kept while the integration is paused.
    Paused,
}

impl DeliveryStatus {
    /// The stored and displayed name.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivering => "delivering",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Paused => "paused",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivering, Self::Succeeded, Self::Failed, Self::Paused]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Its id.
    pub id: DeliveryId,
    /// Its message.
    pub message_id: MessageId,
    /// The account.
    pub account_id: AccountId,
    /// The event.
    pub event: Event,
    /// Its state.
    pub status: DeliveryStatus,
    /// Attempts made (or started).
    pub attempts: u32,
    /// When the next attempt is due (pending only), Unix ms.
    pub next_attempt_at_ms: Option<i64>,
    /// The last response's status.
    pub last_status_code: Option<u16>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Created, Unix ms.
    pub created_at_ms: i64,
}

/// Which deliveries `GET /api/v2/webhook-deliveries` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only deliveries in this state.
    pub status: Option<DeliveryStatus>,
    /// Only deliveries of this event.
    pub event: Option<Event>,
    /// Only deliveries created at or after this time, Unix ms.
    pub since_ms: Option<i64>,
    /// Only the deliveries of one call: events carrying this `pbx_id` (the call events, voicemail,
    /// tags) or this `call_id` (speech, summary, rating). The two are never joined: SIPSIM gives no
    /// mapping from one to the other. With it, the list is in ingest order, oldest first.
    pub call: Option<String>,
}

/// The longest `pbx_id` or `call_id` a search takes.
pub const CALL_MAX_LEN: usize = 200;

impl DeliveryFilter {
    /// Whether the list runs oldest first (a call's story) rather than newest first.
    pub fn oldest_first(&self) -> bool {
        self.call.is_some()
    }
}
