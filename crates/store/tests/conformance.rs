//! The store conformance suite: every `Store` operation's promised semantics, written once against the
//! trait and run on each backend: `sqlite::*` on a temporary file, `postgres::*` on a fresh database
//! copied from a migrated template (`SIPSIM_TEST_POSTGRES_URL`; see `sipsim_store::testing`).

use std::sync::Arc;

use sipsim_core::secret::{ClientSecret, SigningSecret};
use sipsim_core::store::{IntegrationState, IntegrationUpdate, NewApiClient, SubscriptionChange};
use sipsim_core::target::{TargetPolicy, WebhookUrl};
use sipsim_core::{AccountId, Event, EventSet, Scope, ScopeSet, Store, StoreError};
use sipsim_store::{PgStore, SqliteStore};

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    // Migrating twice is a no-op.
    store.migrate().await.unwrap();
    (Arc::new(store), dir)
}

fn url(s: &str) -> WebhookUrl {
    WebhookUrl::parse(s, TargetPolicy::PublicHttpsOnly).unwrap()
}

fn update(u: &str, disabled: bool, events: Option<EventSet>) -> IntegrationUpdate {
    IntegrationUpdate {
        webhook_url: url(u),
        disabled,
        events,
        new_signing_secret: SigningSecret::generate(),
    }
}

async fn accounts_and_clients(store: &dyn Store) {
    let acc = store.create_account("Acme").await.unwrap();
    assert_eq!(store.get_account(&acc.id).await.unwrap(), Some(acc.clone()));
    assert_eq!(store.get_account(&AccountId::generate()).await.unwrap(), None);

    let secret = ClientSecret::generate();
    let scopes = ScopeSet::empty().with(Scope::WebhooksRead);
    let client = store
        .create_client(NewApiClient {
            account_id: acc.id.clone(),
            name: "crm".into(),
            scopes,
            secret_hash: secret.hash(),
        })
        .await
        .unwrap();
    let read = store.get_client(&client.id).await.unwrap().unwrap();
    assert_eq!(read, client);
    assert!(read.secret_hash.matches(secret.expose()));
    assert_eq!(read.scopes, scopes);

    let missing = store
        .create_client(NewApiClient {
            account_id: AccountId::generate(),
            name: "x".into(),
            scopes,
            secret_hash: secret.hash(),
        })
        .await;
    assert!(matches!(missing, Err(StoreError::AccountNotFound(_))));

    store.record_client_use(&client.id, 1234).await.unwrap();
    let listed = store.list_clients(&acc.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at_ms, Some(1234));

    let before = store.revocations_after(0).await.unwrap();
    assert!(store.delete_client(&client.id).await.unwrap());
    assert!(!store.delete_client(&client.id).await.unwrap());
    assert_eq!(store.get_client(&client.id).await.unwrap(), None);
    let after = store.revocations_after(0).await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    let last = after.last().unwrap();
    assert_eq!(last.client_id, client.id);
    assert!(store.revocations_after(last.seq).await.unwrap().is_empty());
}

async fn integration_lifecycle(store: &dyn Store) {
    let acc = store.create_account("Acme").await.unwrap();
    assert_eq!(store.get_integration(&acc.id).await.unwrap(), None);
    let none = store
        .change_subscription(&acc.id, SubscriptionChange::Subscribe(Event::Sms))
        .await
        .unwrap();
    assert_eq!(none, None);

    let first = update("https://example.com/a", false, None);
    let secret = first.new_signing_secret.clone();
    let (created, was_new) = store.put_integration(&acc.id, first).await.unwrap();
    assert!(was_new);
    assert_eq!(created.state, IntegrationState::Enabled);
    assert!(created.events.is_empty(), "a new integration subscribes to nothing");
    assert_eq!(created.signing_secret, secret);

    let events: EventSet = [Event::Rating, Event::IncomingCallStart].into_iter().collect();
    let (changed, was_new) = store
        .put_integration(&acc.id, update("https://example.com/b", true, Some(events)))
        .await
        .unwrap();
    assert!(!was_new);
    assert_eq!(changed.webhook_url.as_str(), "https://example.com/b");
    assert_eq!(changed.state, IntegrationState::Disabled);
    assert_eq!(changed.events, events);
    assert_eq!(changed.signing_secret, secret, "set never rotates the secret");
    assert!(changed.version > created.version);

    // Without events, subscriptions stay; without --disabled, it is enabled again.
    let (again, _) =
        store.put_integration(&acc.id, update("https://example.com/b", false, None)).await.unwrap();
    assert_eq!(again.events, events);
    assert_eq!(again.state, IntegrationState::Enabled);
    assert_eq!(again.setting().subscribed_events, ["incoming_call_start", "rating"]);
    assert!(again.setting().enabled);

    let sub = store
        .change_subscription(&acc.id, SubscriptionChange::Subscribe(Event::OutgoingCallEnd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.events.names(), ["incoming_call_start", "outgoing_call_end", "rating"]);
    let same = store
        .change_subscription(&acc.id, SubscriptionChange::Subscribe(Event::OutgoingCallEnd))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same.events, sub.events);
    assert_eq!(same.version, sub.version, "a no-op change does not bump the version");
    let unsub = store
        .change_subscription(&acc.id, SubscriptionChange::Unsubscribe(Event::Rating))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unsub.events.names(), ["incoming_call_start", "outgoing_call_end"]);
    let unsub2 = store
        .change_subscription(&acc.id, SubscriptionChange::Unsubscribe(Event::Rating))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unsub2.events, unsub.events);

    assert!(store.remove_integration(&acc.id).await.unwrap());
    assert!(!store.remove_integration(&acc.id).await.unwrap());
    assert_eq!(store.get_integration(&acc.id).await.unwrap(), None);

    let missing = store
        .put_integration(&AccountId::generate(), update("https://example.com/", false, None))
        .await;
    assert!(matches!(missing, Err(StoreError::AccountNotFound(_))));
}

async fn concurrent_subscriptions_all_survive(store: &Arc<dyn Store>) {
    let acc = store.create_account("Acme").await.unwrap();
    store.put_integration(&acc.id, update("https://example.com/", false, None)).await.unwrap();
    let tasks: Vec<_> = Event::CATALOG
        .into_iter()
        .map(|e| {
            let store = store.clone();
            let id = acc.id.clone();
            tokio::spawn(async move {
                store.change_subscription(&id, SubscriptionChange::Subscribe(e)).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let got = store.get_integration(&acc.id).await.unwrap().unwrap();
    assert_eq!(got.events, EventSet::ALL);
}

async fn settings_keep_the_first_value(store: &dyn Store) {
    assert_eq!(store.setting_or_insert("k", "one").await.unwrap(), "one");
    assert_eq!(store.setting_or_insert("k", "two").await.unwrap(), "one");
}

// --- The delivery queue. ---

use sipsim_core::queue::{
    AttemptRecord, Completion, DeliveryStatus, FinishedAttempt, IngestOutcome, NewMessage, Shares,
    SkipReason,
};

fn message(account: &AccountId, event: Event, key: Option<&str>) -> NewMessage {
    NewMessage {
        account_id: account.clone(),
        event,
        body: format!(r#"{{"event":"{event}"}}"#).into_bytes(),
        ordering_key: None,
        idempotency_key: key.map(str::to_owned),
    }
}

/// A message of the call `pbx_id`: it is ordered after the call's earlier messages.
fn call_message(account: &AccountId, event: Event, pbx_id: &str) -> NewMessage {
    NewMessage { ordering_key: Some(pbx_id.to_owned()), ..message(account, event, None) }
}

async fn one_attempt(
    store: &dyn Store,
    c: &sipsim_core::queue::ClaimedDelivery,
    completion: Completion,
) {
    let applied = finish(store, &c.id, &c.lease_token, &record(0, Some(200), None), completion)
        .await
        .unwrap();
    assert!(applied);
}

/// A new account whose integration (enabled, at example.com) is subscribed to `events`.
async fn subscribed_account(store: &dyn Store, name: &str, events: &[Event]) -> AccountId {
    let acc = store.create_account(name).await.unwrap().id;
    let events: EventSet = events.iter().copied().collect();
    store.put_integration(&acc, update("https://example.com/", false, Some(events))).await.unwrap();
    acc
}

async fn a_calls_events_go_out_one_at_a_time_in_order(store: &dyn Store) {
    let now = 11_000_000;
    let acc = subscribed_account(
        store,
        "ordered",
        &[Event::IncomingCallStart, Event::IncomingCallAnswer, Event::IncomingCallEnd],
    )
    .await;
    let ids: Vec<sipsim_core::DeliveryId> = store
        .ingest(
            &[
                call_message(&acc, Event::IncomingCallStart, "call_a"),
                call_message(&acc, Event::IncomingCallAnswer, "call_a"),
                call_message(&acc, Event::IncomingCallStart, "call_b"),
                call_message(&acc, Event::IncomingCallEnd, "call_a"),
            ],
            now,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|o| match o {
            IngestOutcome::Enqueued { delivery_id, .. } => delivery_id,
            other => panic!("{other:?}"),
        })
        .collect();
    let waiting = store.get_delivery(&ids[1]).await.unwrap().unwrap();
    assert_eq!(waiting.status, DeliveryStatus::Pending);
    assert_eq!(waiting.next_attempt_at_ms, None, "waiting for the call's first event");
    let seqs = |claimed: &[sipsim_core::queue::ClaimedDelivery], call: &str| {
        let mut v: Vec<(i64, sipsim_core::DeliveryId)> = claimed
            .iter()
            .filter_map(|c| {
                let link = c.chain.as_ref()?;
                (link.key == call).then(|| (link.seq, c.id.clone()))
            })
            .collect();
        v.sort();
        v
    };
    // A claim brings each call's first event with the ones waiting behind it (a train), in one
    // lease; the limit counts the trains' heads.
    let first = store.claim_due(now, 2, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(
        seqs(&first, "call_a"),
        [(1, ids[0].clone()), (2, ids[1].clone()), (3, ids[3].clone())]
    );
    assert_eq!(seqs(&first, "call_b"), [(1, ids[2].clone())]);
    assert!(first.iter().all(|c| c.lease_token == first[0].lease_token));
    let get = |id: &sipsim_core::DeliveryId| first.iter().find(|c| &c.id == id).unwrap().clone();
    let (a1, a2, b1, a3) = (get(&ids[0]), get(&ids[1]), get(&ids[2]), get(&ids[3]));
    // A retry of the head: the rest of its train goes back, behind it.
    one_attempt(store, &b1, Completion::Succeeded).await;
    one_attempt(store, &a1, Completion::RetryAt(now + 500)).await;
    let unsent = [(a2.id.clone(), a2.lease_token.clone()), (a3.id.clone(), a3.lease_token.clone())];
    store.unclaim(&unsent, now + 50).await.unwrap();
    for id in [&a2.id, &a3.id] {
        let back = store.get_delivery(id).await.unwrap().unwrap();
        assert_eq!((back.status, back.next_attempt_at_ms), (DeliveryStatus::Pending, None));
    }
    assert!(store.claim_due(now + 100, 10, 1000, &Shares::UNLIMITED).await.unwrap().is_empty());
    let retry = store.claim_due(now + 500, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(
        seqs(&retry, "call_a"),
        [(1, ids[0].clone()), (2, ids[1].clone()), (3, ids[3].clone())],
        "the retry comes before anything after it, and brings its train again"
    );
    let by_id = |id: &sipsim_core::DeliveryId| retry.iter().find(|c| &c.id == id).unwrap().clone();
    assert_eq!((by_id(&ids[0]).attempt, by_id(&ids[1]).attempt), (2, 1), "unsent is not counted");
    // The head succeeds, the next fails for good, and the last is handed back after them: it is
    // now the call's earliest unfinished event, so it is due at once.
    one_attempt(store, &by_id(&ids[0]), Completion::Succeeded).await;
    one_attempt(store, &by_id(&ids[1]), Completion::Failed).await;
    let last = by_id(&ids[3]);
    store.unclaim(&[(last.id.clone(), last.lease_token.clone())], now + 600).await.unwrap();
    let third = store.claim_due(now + 700, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].id, ids[3]);
    assert_eq!(third[0].attempt, 1);

    // A dead node's train: when its lease expires only the call's first event is made due; the
    // others wait behind it again, and the next claim brings the train back in order.
    let more: Vec<_> =
        (0..3).map(|_| call_message(&acc, Event::IncomingCallAnswer, "call_c")).collect();
    store.ingest(&more, now + 800).await.unwrap();
    let train = store.claim_due(now + 800, 1, 100, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(seqs(&train, "call_c").len(), 3);
    assert_eq!(store.release_expired_leases(now + 900).await.unwrap(), 3);
    let stats = store.queue_stats(now + 900).await.unwrap();
    assert_eq!(stats.due, 1, "{stats:?}");
    let again = store.claim_due(now + 900, 1, 100, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(seqs(&again, "call_c").iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 3]);
}

/// A result says how many of the calls' next events it made due, so that a dispatcher looks for
/// work again only when there is some: after a call's event that ended with its next one waiting,
/// not after one whose call has nothing queued, an SMS, or a retry.
async fn results_say_when_a_calls_next_event_became_due(store: &dyn Store) {
    let now = 12_000_000;
    let acc = subscribed_account(
        store,
        "released",
        &[Event::IncomingCallStart, Event::IncomingCallAnswer, Event::Sms],
    )
    .await;
    let result = |c: &sipsim_core::queue::ClaimedDelivery, completion| FinishedAttempt {
        id: c.id.clone(),
        lease_token: c.lease_token.clone(),
        record: record(now, Some(200), None),
        completion,
    };
    store
        .ingest(
            &[
                call_message(&acc, Event::IncomingCallStart, "call_r"),
                message(&acc, Event::Sms, None),
            ],
            now,
        )
        .await
        .unwrap();
    let heads = store.claim_due(now, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(heads.len(), 2);
    // The call's next event comes while its first is out: it waits behind it.
    store
        .ingest(&[call_message(&acc, Event::IncomingCallAnswer, "call_r")], now + 10)
        .await
        .unwrap();
    let all: Vec<FinishedAttempt> =
        heads.iter().map(|c| result(c, Completion::Succeeded)).collect();
    let completed = store.complete(&all).await.unwrap();
    assert_eq!(completed.applied, [true, true]);
    assert_eq!(completed.released, 1, "the answer waited for the start");
    let next = store.claim_due(now + 20, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(next.len(), 1);
    let retried =
        store.complete(&[result(&next[0], Completion::RetryAt(now + 500))]).await.unwrap();
    assert_eq!(retried.released, 0, "a retry keeps its call waiting");
    let again = store.claim_due(now + 500, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    let last = store.complete(&[result(&again[0], Completion::Succeeded)]).await.unwrap();
    assert_eq!(
        (last.applied.as_slice(), last.released),
        (&[true][..], 0),
        "nothing waits behind the call's last event"
    );
}

/// Completes one attempt through the group-commit API.
async fn finish(
    store: &dyn Store,
    id: &sipsim_core::DeliveryId,
    lease_token: &str,
    record: &AttemptRecord,
    completion: Completion,
) -> Result<bool, StoreError> {
    let completed = store
        .complete(&[FinishedAttempt {
            id: id.clone(),
            lease_token: lease_token.to_owned(),
            record: record.clone(),
            completion,
        }])
        .await?;
    Ok(completed.applied[0])
}

fn record(at: i64, status: Option<u16>, error: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        started_at_ms: at,
        duration_ms: 12,
        status_code: status,
        error: error.map(str::to_owned),
        response_snippet: Some("ok".into()),
    }
}

async fn ingest_snapshots_subscriptions_and_dedups(store: &dyn Store) {
    let now = 1_000_000;
    let with = store.create_account("subscribed").await.unwrap();
    let events: EventSet = [Event::Sms].into_iter().collect();
    store
        .put_integration(&with.id, update("https://example.com/", false, Some(events)))
        .await
        .unwrap();
    let off = store.create_account("disabled").await.unwrap();
    store
        .put_integration(&off.id, update("https://example.com/", true, Some(events)))
        .await
        .unwrap();
    let none = store.create_account("none").await.unwrap();

    let out = store
        .ingest(
            &[
                message(&with.id, Event::Sms, Some("k1")),
                message(&with.id, Event::Tags, None),
                message(&off.id, Event::Sms, None),
                message(&none.id, Event::Sms, None),
                message(&with.id, Event::Sms, Some("k1")),
            ],
            now,
        )
        .await
        .unwrap();
    assert!(matches!(out[0], IngestOutcome::Enqueued { .. }));
    assert!(matches!(out[1], IngestOutcome::Skipped { reason: SkipReason::NotSubscribed, .. }));
    assert!(matches!(out[2], IngestOutcome::Skipped { reason: SkipReason::Disabled, .. }));
    assert!(matches!(out[3], IngestOutcome::Skipped { reason: SkipReason::NoIntegration, .. }));
    assert_eq!(out[4], IngestOutcome::Duplicate { message_id: out[0].message_id().clone() });

    // The key is remembered across requests for 24 h, then may be used again.
    let again =
        store.ingest(&[message(&with.id, Event::Sms, Some("k1"))], now + 1000).await.unwrap();
    assert_eq!(again[0], IngestOutcome::Duplicate { message_id: out[0].message_id().clone() });
    let later = store
        .ingest(&[message(&with.id, Event::Sms, Some("k1"))], now + 24 * 3600 * 1000 + 1)
        .await
        .unwrap();
    assert!(matches!(later[0], IngestOutcome::Enqueued { .. }));

    // Keys are per account.
    let other = store.ingest(&[message(&off.id, Event::Sms, Some("k1"))], now).await.unwrap();
    assert!(matches!(other[0], IngestOutcome::Skipped { .. }));

    // An unknown account fails the whole batch: the valid item before it is not stored either.
    let before = store.claim_due(i64::MAX / 2, 100, 1000, &Shares::UNLIMITED).await.unwrap().len();
    assert_eq!(before, 2, "the two enqueued sms deliveries");
    let err = store
        .ingest(
            &[
                message(&with.id, Event::Sms, None),
                message(&AccountId::generate(), Event::Sms, None),
            ],
            now,
        )
        .await;
    assert!(matches!(err, Err(StoreError::AccountNotFound(_))));
    assert!(store.claim_due(i64::MAX / 2, 100, 1000, &Shares::UNLIMITED).await.unwrap().is_empty());
}

async fn group_commit_keeps_each_batch_atomic(store: &dyn Store) {
    let now = 7_000_000;
    let acc = store.create_account("g").await.unwrap();
    let events: EventSet = [Event::Sms].into_iter().collect();
    store
        .put_integration(&acc.id, update("https://example.com/", false, Some(events)))
        .await
        .unwrap();
    let good = [message(&acc.id, Event::Sms, Some("g1")), message(&acc.id, Event::Sms, None)];
    let bad = [
        message(&acc.id, Event::Sms, Some("g2")),
        message(&AccountId::generate(), Event::Sms, None),
    ];
    let also_good = [message(&acc.id, Event::Sms, Some("g2"))];
    let results = store.ingest_groups(&[&good, &bad, &also_good], now).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap().len(), 2);
    assert!(matches!(results[1], Err(StoreError::AccountNotFound(_))));
    // The failed batch's idempotency key was rolled back with it, so the next batch may use it.
    assert!(matches!(results[2].as_ref().unwrap()[0], IngestOutcome::Enqueued { .. }));
    assert_eq!(store.claim_due(now, 100, 1000, &Shares::UNLIMITED).await.unwrap().len(), 3);

    // Completions are group-committed too, each fenced on its own.
    let claimed_again = {
        store.release_expired_leases(now + 1000).await.unwrap();
        store.claim_due(now + 1000, 100, 1000, &Shares::UNLIMITED).await.unwrap()
    };
    assert_eq!(claimed_again.len(), 3);
    let mut finished: Vec<FinishedAttempt> = claimed_again
        .iter()
        .map(|c| FinishedAttempt {
            id: c.id.clone(),
            lease_token: c.lease_token.clone(),
            record: record(now + 1000, Some(200), None),
            completion: Completion::Succeeded,
        })
        .collect();
    finished[1].lease_token = "lease_stale".into();
    let completed = store.complete(&finished).await.unwrap();
    assert_eq!(completed.applied, [true, false, true]);
    assert_eq!(
        store.get_delivery(&finished[1].id).await.unwrap().unwrap().status,
        DeliveryStatus::Delivering
    );
}

async fn claims_share_slots_round_robin_and_unclaim_restores(store: &dyn Store) {
    let now = 9_000_000;
    let events: EventSet = [Event::Sms].into_iter().collect();
    let mut accounts = Vec::new();
    for (name, backlog) in [("a", 10), ("b", 3), ("c", 3)] {
        let id = store.create_account(name).await.unwrap().id;
        store
            .put_integration(&id, update("https://example.com/", false, Some(events)))
            .await
            .unwrap();
        // Ingested one at a time, 1 ms apart, so each account's oldest is known.
        for k in 0..backlog {
            store.ingest(&[message(&id, Event::Sms, None)], now - 1_000 + k).await.unwrap();
        }
        accounts.push(id);
    }
    let (a, b, c) = (&accounts[0], &accounts[1], &accounts[2]);
    let of = |claimed: &[sipsim_core::queue::ClaimedDelivery], account: &AccountId| {
        claimed.iter().filter(|d| &d.account_id == account).count()
    };

    // Never more of an account than its free slots: a has 10 due but 2 free, b none.
    let shares = Shares::uniform(3, vec![(a.clone(), 1), (b.clone(), 3)]);
    let first = store.claim_due(now, 100, 1000, &shares).await.unwrap();
    assert_eq!((of(&first, a), of(&first, b), of(&first, c)), (2, 0, 3));
    let handed_back: Vec<_> = first.iter().map(|d| (d.id.clone(), d.lease_token.clone())).collect();
    store.unclaim(&handed_back, now).await.unwrap();

    // An account whose limit was lowered (adaptive concurrency) gets only that: c is down to 1,
    // a to 2 of which 1 is in use.
    let mut lowered = Shares::uniform(3, vec![(a.clone(), 1)]);
    lowered.lowered = vec![(c.clone(), 1), (a.clone(), 2)];
    let second = store.claim_due(now, 100, 1000, &lowered).await.unwrap();
    assert_eq!((of(&second, a), of(&second, b), of(&second, c)), (1, 3, 1));
    let handed_back: Vec<_> =
        second.iter().map(|d| (d.id.clone(), d.lease_token.clone())).collect();
    store.unclaim(&handed_back, now).await.unwrap();

    // Round robin: one slot per account and one delivery per claim, three claims in a row reach
    // three accounts, although a has the most and the oldest due.
    let one_each = Shares::uniform(1, Vec::new());
    let mut reached = Vec::new();
    for _ in 0..3 {
        let claimed = store.claim_due(now, 1, 1000, &one_each).await.unwrap();
        assert_eq!(claimed.len(), 1);
        reached.push(claimed[0].account_id.clone());
    }
    reached.sort();
    let mut all = accounts.clone();
    all.sort();
    assert_eq!(reached, all, "each claim goes on with the next account");

    // What was handed back is due as before, its attempt not counted.
    let rest = store.claim_due(now, 100, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(rest.len(), 16 - 3);
    assert!(rest.iter().all(|d| d.attempt == 1), "an unclaimed delivery's attempt is not counted");
}

async fn retention_prunes_finished_old_messages_only(store: &dyn Store) {
    let old = 1_000_000;
    let acc = subscribed_account(store, "r", &[Event::Sms]).await;
    let done = store.ingest(&[message(&acc, Event::Sms, Some("old-key"))], old).await.unwrap();
    let IngestOutcome::Enqueued { delivery_id: done_id, .. } = done[0].clone() else { panic!() };
    let claimed = store.claim_due(old, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert!(
        finish(
            store,
            &claimed[0].id,
            &claimed[0].lease_token,
            &record(old, Some(200), None),
            Completion::Succeeded
        )
        .await
        .unwrap()
    );
    let waiting = store.ingest(&[message(&acc, Event::Sms, None)], old).await.unwrap();
    let IngestOutcome::Enqueued { delivery_id: waiting_id, .. } = waiting[0].clone() else {
        panic!()
    };
    let recent = store.ingest(&[message(&acc, Event::Sms, None)], old + 10_000).await.unwrap();
    let IngestOutcome::Enqueued { delivery_id: recent_id, .. } = recent[0].clone() else {
        panic!()
    };

    let now = old + 25 * 3600 * 1000;
    let pruned = store.prune(old + 5_000, 0, now).await.unwrap();
    assert_eq!(pruned, 1, "only the old, finished message");
    assert_eq!(store.get_delivery(&done_id).await.unwrap(), None);
    assert!(store.list_attempts(&done_id).await.unwrap().is_empty());
    assert!(store.get_delivery(&waiting_id).await.unwrap().is_some(), "pending is kept");
    assert!(store.get_delivery(&recent_id).await.unwrap().is_some());
    // A key past its 24 h (pruned or not) can be used again.
    let again = store.ingest(&[message(&acc, Event::Sms, Some("old-key"))], now).await.unwrap();
    assert!(matches!(again[0], IngestOutcome::Enqueued { .. }));
}

async fn claims_lease_fence_and_retry(store: &dyn Store) {
    let now = 5_000_000;
    let acc = store.create_account("q").await.unwrap();
    let events: EventSet = [Event::Sms, Event::Tags].into_iter().collect();
    let (integration, _) = store
        .put_integration(&acc.id, update("https://example.com/hook", false, Some(events)))
        .await
        .unwrap();
    let out = store.ingest(&[message(&acc.id, Event::Sms, None)], now).await.unwrap();
    let IngestOutcome::Enqueued { delivery_id, message_id } = out[0].clone() else {
        panic!("not enqueued: {out:?}")
    };
    assert_eq!(store.next_due_at().await.unwrap(), Some(now));

    // Not due yet: nothing to claim.
    assert!(store.claim_due(now - 1, 10, 1000, &Shares::UNLIMITED).await.unwrap().is_empty());
    let claimed = store.claim_due(now, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(c.id, delivery_id);
    assert_eq!(c.message_id, message_id);
    assert_eq!(c.attempt, 1);
    assert_eq!(c.body, br#"{"event":"sms"}"#);
    assert_eq!(c.webhook_url, "https://example.com/hook");
    assert_eq!(c.signing_secret, integration.signing_secret);
    assert_eq!(
        store.get_delivery(&delivery_id).await.unwrap().unwrap().status,
        DeliveryStatus::Delivering
    );
    // Leased: a second claim does not get it.
    assert!(store.claim_due(now, 10, 1000, &Shares::UNLIMITED).await.unwrap().is_empty());
    assert_eq!(store.next_due_at().await.unwrap(), None);

    // A wrong token changes nothing.
    assert!(
        !finish(
            store,
            &delivery_id,
            "lease_other",
            &record(now, Some(500), None),
            Completion::Failed
        )
        .await
        .unwrap()
    );
    // Retry later.
    assert!(
        finish(
            store,
            &c.id,
            &c.lease_token,
            &record(now, Some(500), None),
            Completion::RetryAt(now + 5000)
        )
        .await
        .unwrap()
    );
    let d = store.get_delivery(&delivery_id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.next_attempt_at_ms, Some(now + 5000));
    assert_eq!(d.last_status_code, Some(500));
    assert!(store.claim_due(now + 4999, 10, 1000, &Shares::UNLIMITED).await.unwrap().is_empty());

    // Second attempt: the lease expires (a dead worker), the sweeper releases it, another claims it.
    let second = store.claim_due(now + 5000, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(second[0].attempt, 2);
    assert_eq!(store.release_expired_leases(now + 5999).await.unwrap(), 0);
    assert_eq!(store.release_expired_leases(now + 6000).await.unwrap(), 1);
    let third = store.claim_due(now + 6000, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(third[0].attempt, 3);
    assert_ne!(third[0].lease_token, second[0].lease_token);
    // The dead worker's late result is fenced off.
    // (A restarting single node may also reclaim leases that have not expired, due at once.)
    let fourth_try = store.reclaim_all_leases(now + 6001).await.unwrap();
    assert_eq!(fourth_try, 1);
    assert_eq!(store.next_due_at().await.unwrap(), Some(now + 6001));
    let third = store.claim_due(now + 6001, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(third[0].attempt, 4);
    assert!(
        !finish(
            store,
            &delivery_id,
            &second[0].lease_token,
            &record(now, Some(200), None),
            Completion::Succeeded
        )
        .await
        .unwrap()
    );
    assert!(
        finish(
            store,
            &delivery_id,
            &third[0].lease_token,
            &record(now + 6000, Some(204), None),
            Completion::Succeeded
        )
        .await
        .unwrap()
    );
    let d = store.get_delivery(&delivery_id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Succeeded);
    assert_eq!(d.attempts, 4);
    let attempts = store.list_attempts(&delivery_id).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(),
        [Some(500), Some(204)],
        "the fenced-off result is not logged"
    );

    // A disabled integration's deliveries wait: not claimed until it is enabled again.
    let out = store.ingest(&[message(&acc.id, Event::Tags, None)], now).await.unwrap();
    assert!(matches!(out[0], IngestOutcome::Enqueued { .. }));
    store.put_integration(&acc.id, update("https://example.com/hook", true, None)).await.unwrap();
    assert!(store.claim_due(now + 10_000, 10, 1000, &Shares::UNLIMITED).await.unwrap().is_empty());
    store.put_integration(&acc.id, update("https://example.com/hook", false, None)).await.unwrap();
    let c = store.claim_due(now + 10_000, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(c.len(), 1);
    assert!(
        finish(
            store,
            &c[0].id,
            &c[0].lease_token,
            &record(now, None, Some("timeout")),
            Completion::Failed
        )
        .await
        .unwrap()
    );
    let d = store.get_delivery(&c[0].id).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.last_error.as_deref(), Some("timeout"));
}

/// Enqueues one message per event for `acc` at `now` and returns the deliveries' ids, in order.
async fn enqueue(
    store: &dyn Store,
    acc: &AccountId,
    events: &[Event],
    now: i64,
) -> Vec<sipsim_core::DeliveryId> {
    let batch: Vec<NewMessage> = events.iter().map(|e| message(acc, *e, None)).collect();
    store
        .ingest(&batch, now)
        .await
        .unwrap()
        .into_iter()
        .map(|o| match o {
            IngestOutcome::Enqueued { delivery_id, .. } => delivery_id,
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn deliveries_list_page_resend_and_log_tests(store: &dyn Store) {
    use sipsim_core::queue::DeliveryFilter;
    let now = 20_000_000;
    let acc = store.create_account("lister").await.unwrap().id;
    let other = store.create_account("other").await.unwrap().id;
    for a in [&acc, &other] {
        store
            .put_integration(a, update("https://example.com/", false, Some(EventSet::ALL)))
            .await
            .unwrap();
    }
    let ids = enqueue(
        store,
        &acc,
        &[Event::Sms, Event::Voicemail, Event::Sms, Event::Speech, Event::Sms],
        now,
    )
    .await;
    enqueue(store, &other, &[Event::Sms], now).await;
    // Fail the first delivery for good (the other account's slot is taken, so it is this one's).
    let shares = Shares::uniform(1, vec![(other.clone(), 1)]);
    let claimed = store.claim_due(now, 1, 1000, &shares).await.unwrap();
    assert_eq!(claimed[0].id, ids[0], "an account's oldest due first");
    one_attempt(store, &claimed[0], Completion::Failed).await;

    // Newest first (ids are time-ordered; within one millisecond their order is arbitrary but
    // fixed), in pages that neither skip nor repeat, never another account's.
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.as_str().cmp(a.as_str()));
    let all = DeliveryFilter::default();
    let mut seen = Vec::new();
    let mut cursor: Option<sipsim_core::DeliveryId> = None;
    loop {
        let page = store.list_deliveries(&acc, &all, cursor.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor = Some(last.id.clone());
        seen.extend(page.iter().map(|d| d.id.clone()));
    }
    assert_eq!(seen, newest_first);
    let failed = store.get_delivery(&ids[0]).await.unwrap().unwrap();
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert_eq!(failed.attempts, 1);
    // Filters combine.
    let sms = DeliveryFilter {
        event: Some(Event::Sms),
        status: Some(DeliveryStatus::Pending),
        since_ms: Some(now),
        ..DeliveryFilter::default()
    };
    let got = store.list_deliveries(&acc, &sms, None, 10).await.unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    let later = DeliveryFilter { since_ms: Some(now + 1), ..DeliveryFilter::default() };
    assert!(store.list_deliveries(&acc, &later, None, 10).await.unwrap().is_empty());

    // Resending queues the same message again as a new, due delivery; only the owner can.
    assert!(store.resend(&other, &ids[0], now + 10).await.unwrap().is_none());
    let again = store.resend(&acc, &ids[0], now + 10).await.unwrap().unwrap();
    assert_ne!(again.id, ids[0]);
    assert_eq!(again.message_id, failed.message_id);
    assert_eq!(again.status, DeliveryStatus::Pending);
    assert_eq!(again.next_attempt_at_ms, Some(now + 10));
    assert_eq!(store.get_delivery(&again.id).await.unwrap(), Some(again));

    // A Send Test attempt is logged as a finished delivery with its attempt.
    let test_id = store
        .record_test_attempt(
            &acc,
            &sipsim_core::MessageId::generate(),
            b"{}",
            &record(now, Some(500), Some("boom")),
            false,
        )
        .await
        .unwrap();
    let test = store.get_delivery(&test_id).await.unwrap().unwrap();
    assert_eq!(test.status, DeliveryStatus::Failed);
    assert_eq!(test.last_status_code, Some(500));
    let attempts = store.list_attempts(&test_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].error.as_deref(), Some("boom"));
    let missing = store
        .record_test_attempt(
            &AccountId::generate(),
            &sipsim_core::MessageId::generate(),
            b"{}",
            &record(now, Some(200), None),
            true,
        )
        .await;
    assert!(matches!(missing, Err(StoreError::AccountNotFound(_))));
}

/// `?call=…`: a call's deliveries, by its `pbx_id` or its `call_id` (never joined), oldest first
/// in pages that neither skip nor repeat, only the account's, combined with the other filters.
async fn one_calls_deliveries_in_ingest_order(store: &dyn Store) {
    use sipsim_core::payload::keys_of_call;
    use sipsim_core::queue::DeliveryFilter;
    let now = 25_000_000;
    let acc = store.create_account("caller").await.unwrap().id;
    let other = store.create_account("neighbour").await.unwrap().id;
    for a in [&acc, &other] {
        store
            .put_integration(a, update("https://example.com/", false, Some(EventSet::ALL)))
            .await
            .unwrap();
    }
    let [as_call_id] = [keys_of_call("42")[1].clone()];
    // Interleaved with another call and an SMS, over several batches, as a PBX sends them; within
    // one batch (one millisecond) a call's own events keep their order.
    let batches = [
        vec![
            call_message(&acc, Event::IncomingCallStart, "42"),
            call_message(&acc, Event::IncomingCallStart, "43"),
        ],
        vec![message(&acc, Event::Sms, None), call_message(&acc, Event::IncomingCallAnswer, "42")],
        vec![
            call_message(&acc, Event::IncomingCallEnd, "42"),
            call_message(&acc, Event::Voicemail, "42"),
        ],
        vec![
            call_message(&acc, Event::Speech, &as_call_id),
            call_message(&other, Event::IncomingCallStart, "42"),
        ],
        vec![
            call_message(&acc, Event::Summary, &as_call_id),
            call_message(&acc, Event::IncomingCallEnd, "43"),
        ],
    ];
    let mut ids = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        for outcome in store.ingest(batch, now + i as i64).await.unwrap() {
            if let IngestOutcome::Enqueued { delivery_id, .. } = outcome {
                ids.push(delivery_id);
            }
        }
    }
    let of_42 = [&ids[0], &ids[3], &ids[4], &ids[5], &ids[6], &ids[8]];
    let call = DeliveryFilter { call: Some("42".into()), ..DeliveryFilter::default() };
    let mut seen = Vec::new();
    let mut cursor: Option<sipsim_core::DeliveryId> = None;
    loop {
        let page = store.list_deliveries(&acc, &call, cursor.as_ref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(last.id.clone());
        seen.extend(page.iter().map(|d| (d.id.clone(), d.event)));
    }
    let events: Vec<Event> = seen.iter().map(|(_, e)| *e).collect();
    assert_eq!(
        events,
        [
            Event::IncomingCallStart,
            Event::IncomingCallAnswer,
            Event::IncomingCallEnd,
            Event::Voicemail,
            Event::Speech,
            Event::Summary
        ]
    );
    assert_eq!(seen.iter().map(|(id, _)| id).collect::<Vec<_>>(), of_42);
    // A resend of the call's end is the call's too, last (it was made last); the SMS never is.
    let again = store.resend(&acc, &ids[4], now + 10).await.unwrap().unwrap();
    let all = store.list_deliveries(&acc, &call, None, 10).await.unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!((&all[6].id, all[6].event), (&again.id, Event::IncomingCallEnd));
    let after_summary = store.list_deliveries(&acc, &call, Some(&ids[8]), 10).await.unwrap();
    assert_eq!(after_summary.iter().map(|d| &d.id).collect::<Vec<_>>(), [&again.id]);
    // Combined with an event filter; a call nobody made; the neighbour sees only its own.
    let ends = DeliveryFilter { event: Some(Event::IncomingCallEnd), ..call.clone() };
    let got = store.list_deliveries(&acc, &ends, None, 10).await.unwrap();
    assert_eq!(got.iter().map(|d| &d.id).collect::<Vec<_>>(), [&ids[4], &again.id]);
    let nobody = DeliveryFilter { call: Some("4".into()), ..DeliveryFilter::default() };
    assert!(store.list_deliveries(&acc, &nobody, None, 10).await.unwrap().is_empty());
    let theirs = store.list_deliveries(&other, &call, None, 10).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].id, ids[7]);
}

/// A maximum delivery rate is kept with the integration (its version moves, so caches see it),
/// listed for the dispatchers, and removed; the backlog counts what waits or is being sent.
async fn delivery_rates_and_backlog(store: &dyn Store) {
    use sipsim_core::store::DeliveryRate;
    let now = 27_000_000;
    let acc = store.create_account("throttled").await.unwrap().id;
    let rate = DeliveryRate::parse("2.5").unwrap();
    assert_eq!(store.set_delivery_rate(&acc, Some(rate)).await.unwrap(), None, "no integration");
    store
        .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    let before = store.get_integration(&acc).await.unwrap().unwrap();
    let set = store.set_delivery_rate(&acc, Some(rate)).await.unwrap().unwrap();
    assert_eq!(set.max_rate, Some(rate));
    assert!(set.version > before.version);
    assert_eq!(store.get_integration(&acc).await.unwrap().unwrap().max_rate, Some(rate));
    assert!(store.delivery_rates().await.unwrap().contains(&(acc.clone(), rate)));

    assert_eq!(store.backlog(&acc).await.unwrap(), 0);
    let ids = enqueue(store, &acc, &[Event::Sms, Event::Sms, Event::Sms], now).await;
    assert_eq!(store.backlog(&acc).await.unwrap(), 3);
    let claimed = store.claim_due(now, 1, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(store.backlog(&acc).await.unwrap(), 3, "one in flight, two waiting");
    one_attempt(store, &claimed[0], Completion::Succeeded).await;
    assert_eq!(store.backlog(&acc).await.unwrap(), 2);
    assert_eq!(ids.len(), 3);

    let cleared = store.set_delivery_rate(&acc, None).await.unwrap().unwrap();
    assert_eq!(cleared.max_rate, None);
    assert!(!store.delivery_rates().await.unwrap().iter().any(|(a, _)| a == &acc));
}

async fn pause_keeps_deliveries_until_resumed(store: &dyn Store) {
    let now = 30_000_000;
    let acc = store.create_account("pausing").await.unwrap().id;
    store
        .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    let before = enqueue(store, &acc, &[Event::Sms], now).await;
    assert!(store.pause_integration(&acc, "gone", now).await.unwrap());
    assert!(!store.pause_integration(&acc, "gone", now).await.unwrap(), "already paused");
    let paused = store.get_integration(&acc).await.unwrap().unwrap();
    assert_eq!(paused.state, IntegrationState::Paused);
    assert_eq!(paused.paused_reason.as_deref(), Some("gone"));
    // Nothing of a paused integration is claimed; new events are kept as paused.
    assert!(store.claim_due(now, 10, 1000, &Shares::UNLIMITED).await.unwrap().is_empty());
    let kept = enqueue(store, &acc, &[Event::Voicemail, Event::Speech], now + 1).await;
    for id in &kept {
        let d = store.get_delivery(id).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Paused);
    }
    // Resuming with "deliver" makes the kept ones due; the one queued before the pause is due again.
    assert_eq!(
        store
            .resume_integration(&acc, sipsim_core::store::KeptDeliveries::Deliver, now + 5)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        store
            .resume_integration(&acc, sipsim_core::store::KeptDeliveries::Deliver, now + 5)
            .await
            .unwrap(),
        None,
        "not paused any more"
    );
    let mut claimed: Vec<_> = store
        .claim_due(now + 5, 10, 1000, &Shares::UNLIMITED)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    claimed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut expected: Vec<_> = before.iter().chain(&kept).cloned().collect();
    expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(claimed, expected);

    // "Drop" fails what was kept, without sending it.
    let acc2 = store.create_account("dropping").await.unwrap().id;
    store
        .put_integration(&acc2, update("https://example.com/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    store.pause_integration(&acc2, "gone", now).await.unwrap();
    let dropped = enqueue(store, &acc2, &[Event::Sms], now).await;
    assert_eq!(
        store
            .resume_integration(&acc2, sipsim_core::store::KeptDeliveries::Drop, now + 5)
            .await
            .unwrap(),
        Some(1)
    );
    let d = store.get_delivery(&dropped[0]).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert!(d.last_error.unwrap().contains("dropped"));
}

async fn failing_integrations_pause_after_the_period(store: &dyn Store) {
    let now = 40_000_000;
    let acc = store.create_account("failing").await.unwrap().id;
    let healthy = store.create_account("healthy").await.unwrap().id;
    for a in [&acc, &healthy] {
        store
            .put_integration(a, update("https://example.com/", false, Some(EventSet::ALL)))
            .await
            .unwrap();
        enqueue(store, a, &[Event::Sms, Event::Sms], now).await;
    }
    let claimed = store.claim_due(now, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(claimed.len(), 4);
    for c in &claimed {
        let (code, completion) = if c.account_id == acc {
            (500, Completion::RetryAt(now + 10_000))
        } else {
            (200, Completion::Succeeded)
        };
        let at = record(now, Some(code), None);
        assert!(finish(store, &c.id, &c.lease_token, &at, completion).await.unwrap());
    }
    // Failing since `now`: not yet past a period that started later; past one that started after.
    assert!(store.pause_failing_integrations(now - 1, now + 1).await.unwrap().is_empty());
    assert_eq!(
        store.pause_failing_integrations(now, now + 1).await.unwrap(),
        std::slice::from_ref(&acc)
    );
    let got = store.get_integration(&acc).await.unwrap().unwrap();
    assert_eq!(got.state, IntegrationState::Paused);
    let got = store.get_integration(&healthy).await.unwrap().unwrap();
    assert_eq!(got.state, IntegrationState::Enabled);
}

/// Failure emails: what is owed is found, a notice is claimed by one caller at a time and once per
/// episode, a dead claimant's claim runs out, and a recovery answers the last alert.
async fn failure_notices_are_claimed_once_per_episode(store: &Arc<dyn Store>) {
    use sipsim_core::notice::{NoticeKind, ONCE_PER_MS, Owed};
    const HOUR: i64 = 3600 * 1000;
    let now = 50_000_000;
    let acc = store.create_account("noticed").await.unwrap().id;
    store
        .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    let first = store.create_user(&acc, "first@example.com", "x").await.unwrap();
    let second = store.create_user(&acc, "second@example.com", "x").await.unwrap();
    let other = store.create_account("other").await.unwrap().id;
    store.create_user(&other, "other@example.com", "x").await.unwrap();
    // The account's users, and only them (two made in one millisecond have no order).
    let mut emails: Vec<String> =
        store.list_users(&acc).await.unwrap().into_iter().map(|u| u.email).collect();
    emails.sort();
    assert_eq!(emails, [first.email, second.email]);

    enqueue(&**store, &acc, &[Event::Sms, Event::Sms], now).await;
    for c in store.claim_due(now, 10, 1000, &Shares::UNLIMITED).await.unwrap() {
        let failed = record(now, Some(503), Some("HTTP 503"));
        assert!(
            finish(&**store, &c.id, &c.lease_token, &failed, Completion::RetryAt(now + HOUR))
                .await
                .unwrap()
        );
    }
    assert!(store.notice_facts(now - 1).await.unwrap().is_empty(), "not failing that long");
    let facts = store.notice_facts(now).await.unwrap();
    assert_eq!(facts.len(), 1);
    assert_eq!((facts[0].state, facts[0].failing_since_ms), (IntegrationState::Enabled, Some(now)));
    let t = now + HOUR;
    let owed = facts[0].owed(t, HOUR).unwrap();
    assert_eq!(owed, Owed { kind: NoticeKind::Failing, episode: now });
    let recent = store.recent_responses(&acc).await.unwrap();
    assert_eq!(recent.last.as_ref().and_then(|l| l.status_code), Some(503));
    assert_eq!(recent.last_success_ms, None);

    // Eight nodes claim at once: one gets it.
    let claims = (0..8).map(|_| {
        let (store, acc) = (store.clone(), acc.clone());
        tokio::spawn(async move {
            store.claim_notice(&acc, owed, t, t - ONCE_PER_MS, t + 60_000).await.unwrap()
        })
    });
    let mut won = 0;
    for claim in claims {
        won += usize::from(claim.await.unwrap());
    }
    assert_eq!(won, 1, "one claimant");
    // Its node died: the claim runs out and another takes it; then it is sent.
    assert!(
        !store
            .claim_notice(&acc, owed, t + 60_000 - 1, t - ONCE_PER_MS, t + 120_000)
            .await
            .unwrap()
    );
    assert!(
        store.claim_notice(&acc, owed, t + 60_000, t - ONCE_PER_MS, t + 120_000).await.unwrap()
    );
    assert!(store.notice_sent(&acc, owed, t + 1000).await.unwrap());
    assert!(!store.notice_sent(&acc, owed, t + 1000).await.unwrap(), "no claim left");
    assert!(
        !store
            .claim_notice(&acc, owed, t + 2 * ONCE_PER_MS, t + ONCE_PER_MS, t + 3 * ONCE_PER_MS)
            .await
            .unwrap(),
        "once per episode"
    );
    let failing = store.notice_facts(now).await.unwrap()[0].failing.unwrap();
    assert_eq!((failing.episode, failing.sent_at_ms), (now, t + 1000));
    let another = Owed { kind: NoticeKind::Failing, episode: now + 5 };
    assert!(
        !store
            .claim_notice(&acc, another, t + 2000, t + 2000 - ONCE_PER_MS, t + 9000)
            .await
            .unwrap(),
        "a day apart"
    );

    // A pause is a notice of its own, about when it began.
    let paused_at = t + 5000;
    assert!(
        store.pause_integration(&acc, "the endpoint answered 410 Gone", paused_at).await.unwrap()
    );
    let facts = store.notice_facts(0).await.unwrap();
    assert_eq!(
        (facts[0].paused_at_ms, facts[0].paused_reason.as_deref()),
        (Some(paused_at), Some("the endpoint answered 410 Gone"))
    );
    let owed = facts[0].owed(paused_at + 1, HOUR).unwrap();
    assert_eq!(owed, Owed { kind: NoticeKind::Paused, episode: paused_at });
    assert!(
        store
            .claim_notice(
                &acc,
                owed,
                paused_at + 1,
                paused_at + 1 - ONCE_PER_MS,
                paused_at + 60_000
            )
            .await
            .unwrap()
    );
    assert!(store.notice_sent(&acc, owed, paused_at + 2).await.unwrap());
    assert_eq!(store.notice_facts(0).await.unwrap()[0].owed(paused_at + 3, HOUR), None);

    // Resumed, a delivery succeeds: the recovery answering the pause notice is owed, once.
    store
        .resume_integration(&acc, sipsim_core::store::KeptDeliveries::Deliver, paused_at + 10)
        .await
        .unwrap();
    assert_eq!(
        store.get_integration(&acc).await.unwrap().unwrap().state,
        IntegrationState::Enabled
    );
    let due = store.claim_due(i64::MAX / 2, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert!(!due.is_empty());
    for c in &due {
        one_attempt(&**store, c, Completion::Succeeded).await;
    }
    assert!(store.recent_responses(&acc).await.unwrap().last_success_ms.is_some());
    let facts = store.notice_facts(0).await.unwrap();
    assert_eq!(facts.len(), 1, "an alert without its answer keeps the integration in view");
    let owed = facts[0].owed(paused_at + 20, HOUR).unwrap();
    assert_eq!(owed, Owed { kind: NoticeKind::Recovered, episode: paused_at + 2 });
    assert!(
        store
            .claim_notice(
                &acc,
                owed,
                paused_at + 20,
                paused_at + 20 - ONCE_PER_MS,
                paused_at + 60_000
            )
            .await
            .unwrap()
    );
    assert!(store.notice_sent(&acc, owed, paused_at + 21).await.unwrap());
    assert!(store.notice_facts(0).await.unwrap().is_empty(), "answered: nothing in view");

    // A removed integration takes its notices with it, and is claimed by no one.
    assert!(store.remove_integration(&acc).await.unwrap());
    assert!(!store.claim_notice(&acc, owed, paused_at + 30, 0, paused_at + 60_000).await.unwrap());
    store.put_integration(&acc, update("https://example.com/", false, None)).await.unwrap();
    assert!(store.notice_facts(0).await.unwrap().is_empty());
}

async fn users_and_sessions(store: &dyn Store) {
    use sipsim_core::secret::SecretHash;
    use sipsim_core::store::Session;
    let acc = store.create_account("dash").await.unwrap().id;
    let user = store.create_user(&acc, " Ada@Example.com ", "$argon2id$fake").await.unwrap();
    assert_eq!(user.email, "ada@example.com", "stored trimmed and lowercased");
    assert!(matches!(
        store.create_user(&acc, "ADA@example.com", "x").await,
        Err(StoreError::EmailTaken)
    ));
    assert!(matches!(
        store.create_user(&AccountId::generate(), "b@example.com", "x").await,
        Err(StoreError::AccountNotFound(_))
    ));
    assert_eq!(store.get_user_by_email("ADA@EXAMPLE.COM").await.unwrap(), Some(user.clone()));
    assert_eq!(store.get_user_by_email("nobody@x").await.unwrap(), None);

    let session = Session {
        token_hash: SecretHash::of("cookie-token"),
        user_id: user.id.clone(),
        csrf_token: "csrf".into(),
        expires_at_ms: 5_000,
    };
    store.create_session(&session).await.unwrap();
    let (got, who) =
        store.get_session(&SecretHash::of("cookie-token"), 4_999).await.unwrap().unwrap();
    assert_eq!((got, who), (session.clone(), user));
    assert!(store.get_session(&session.token_hash, 5_000).await.unwrap().is_none(), "expired");
    assert!(store.get_session(&SecretHash::of("other"), 0).await.unwrap().is_none());
    assert!(store.delete_session(&session.token_hash).await.unwrap());
    assert!(!store.delete_session(&session.token_hash).await.unwrap());
    assert!(store.get_session(&session.token_hash, 0).await.unwrap().is_none());
}

async fn a_regenerated_secret_keeps_the_old_one_for_a_while(store: &dyn Store) {
    let now = 50_000_000;
    let acc = store.create_account("rotating").await.unwrap().id;
    assert!(
        store.rotate_signing_secret(&acc, &SigningSecret::generate(), now).await.unwrap().is_none(),
        "no integration yet"
    );
    let (before, _) = store
        .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    let new = SigningSecret::generate();
    let rotated = store.rotate_signing_secret(&acc, &new, now + 1000).await.unwrap().unwrap();
    assert_eq!(rotated.signing_secret, new);
    assert_eq!(rotated.previous_signing_secret, Some((before.signing_secret.clone(), now + 1000)));
    assert!(rotated.version > before.version);
    assert_eq!(store.get_integration(&acc).await.unwrap(), Some(rotated));
    // A claim carries the old secret while it is valid, and not after.
    store
        .ingest(&[message(&acc, Event::Sms, None), message(&acc, Event::Sms, None)], now)
        .await
        .unwrap();
    let early = store.claim_due(now + 999, 1, 60_000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(early[0].signing_secret, new);
    assert_eq!(early[0].previous_signing_secret, Some(before.signing_secret));
    let late = store.claim_due(now + 1000, 1, 60_000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(late[0].previous_signing_secret, None);
}

async fn resend_failed_and_attempt_buckets(store: &dyn Store) {
    let now = 60_000_000;
    let acc = store.create_account("resending").await.unwrap().id;
    store
        .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    enqueue(store, &acc, &[Event::Sms, Event::Sms, Event::Voicemail], now).await;
    let claimed = store.claim_due(now, 10, 60_000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(claimed.len(), 3);
    for (i, c) in claimed.iter().enumerate() {
        // Two fail for good (one of them slowly), one succeeds.
        let (code, duration, completion) = match i {
            0 => (500, 10, Completion::Failed),
            1 => (500, 30, Completion::Failed),
            _ => (200, 20, Completion::Succeeded),
        };
        let mut at = record(now + 5, Some(code), None);
        at.duration_ms = duration;
        assert!(finish(store, &c.id, &c.lease_token, &at, completion).await.unwrap());
    }
    let buckets = store.attempt_buckets(&acc, now - 3_600_000, 3_600_000).await.unwrap();
    assert_eq!(buckets.len(), 1, "{buckets:?}");
    let b = buckets[0];
    assert_eq!((b.attempts, b.succeeded, b.mean_ms, b.max_ms), (3, 1, 20, 30));
    assert_eq!(b.start_ms, (now + 5) / 3_600_000 * 3_600_000);
    assert!(store.attempt_buckets(&acc, now + 6, 3_600_000).await.unwrap().is_empty());

    // Resending all failed since a time queues each failed message once, newest delivery only.
    assert_eq!(store.resend_failed_since(&acc, now + 1, now + 10, 100).await.unwrap(), 0);
    assert_eq!(store.resend_failed_since(&acc, now, now + 10, 100).await.unwrap(), 2);
    let again = store.claim_due(now + 10, 10, 60_000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(again.len(), 2);
    let failed: Vec<_> = claimed[..2].iter().map(|c| &c.message_id).collect();
    for c in &again {
        assert!(failed.contains(&&c.message_id), "only the failed messages");
    }
    // Their latest deliveries are now in flight, not failed: nothing to resend.
    assert_eq!(store.resend_failed_since(&acc, now, now + 20, 100).await.unwrap(), 0);
}

/// Every stored secret can be listed and rewritten, each only if unchanged since it was read.
async fn stored_secrets_are_listed_and_rewritten_only_if_unchanged(store: &dyn Store) {
    use sipsim_core::cipher::{SecretRewrite, SecretSlot};
    let a = store.create_account("a").await.unwrap().id;
    let b = store.create_account("b").await.unwrap().id;
    for acc in [&a, &b] {
        store.put_integration(acc, update("https://example.com/", false, None)).await.unwrap();
    }
    store.rotate_signing_secret(&b, &SigningSecret::generate(), 1).await.unwrap();
    store.setting_or_insert("jwt_hs256_key", "plain-jwt-key").await.unwrap();
    store.setting_or_insert("unrelated", "x").await.unwrap();
    let mut secrets = store.stored_secrets().await.unwrap();
    secrets.sort_by_key(|s| format!("{:?}", s.slot));
    let slots: Vec<_> = secrets.iter().map(|s| s.slot.clone()).collect();
    let mut expected = vec![
        SecretSlot::SigningSecret(a.clone()),
        SecretSlot::SigningSecret(b.clone()),
        SecretSlot::PreviousSigningSecret(b.clone()),
        SecretSlot::Setting("jwt_hs256_key".into()),
    ];
    expected.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(slots, expected);
    let integration_a = store.get_integration(&a).await.unwrap().unwrap();
    let current_a =
        secrets.iter().find(|s| s.slot == SecretSlot::SigningSecret(a.clone())).unwrap();
    assert_eq!(current_a.stored, integration_a.signing_secret.expose());

    // Rewritten together.
    let rewrites: Vec<SecretRewrite> = secrets
        .iter()
        .map(|s| SecretRewrite { was: s.clone(), now: format!("{}-rewritten", s.stored) })
        .collect();
    assert!(store.rewrite_secrets(&rewrites).await.unwrap());
    let after = store.stored_secrets().await.unwrap();
    assert!(after.iter().all(|s| s.stored.ends_with("-rewritten")), "{after:?}");
    // A rewrite planned from what is no longer there writes nothing at all.
    let stale: Vec<SecretRewrite> = after
        .iter()
        .map(|s| SecretRewrite { was: s.clone(), now: "second".into() })
        .chain(std::iter::once(rewrites[0].clone()))
        .collect();
    assert!(!store.rewrite_secrets(&stale).await.unwrap());
    let unchanged = store.stored_secrets().await.unwrap();
    assert!(unchanged.iter().all(|s| s.stored.ends_with("-rewritten")));
}

/// Two clicks on "resend all failed", or the same from two nodes, at once: each failed message is
/// queued once, not once per call.
async fn concurrent_resends_of_all_failed_queue_each_message_once(store: &Arc<dyn Store>) {
    let now = 60_000_000;
    let acc = store.create_account("double click").await.unwrap().id;
    store
        .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    let failed = 40;
    enqueue(&**store, &acc, &vec![Event::Sms; failed], now).await;
    let claimed = store.claim_due(now, 100, 60_000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(claimed.len(), failed);
    for c in &claimed {
        let at = record(now + 5, Some(500), None);
        assert!(finish(&**store, &c.id, &c.lease_token, &at, Completion::Failed).await.unwrap());
    }
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (store, acc) = (store.clone(), acc.clone());
            tokio::spawn(async move { store.resend_failed_since(&acc, now, now + 10, 1000).await })
        })
        .collect();
    let mut queued = Vec::new();
    for call in calls {
        queued.push(call.await.unwrap().unwrap());
    }
    assert_eq!(queued.iter().sum::<u64>(), failed as u64, "{queued:?}");
    let again = store.claim_due(now + 10, 1000, 60_000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(again.len(), failed, "one new delivery per failed message");
    let mut messages: Vec<_> = again.iter().map(|c| c.message_id.clone()).collect();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), failed);
}

/// Runs each suite function on SQLite, and on PostgreSQL in a fresh database, under one name each:
/// `sqlite::NAME` and `postgres::NAME`.
async fn queue_stats_count_what_waits(store: &dyn Store) {
    use sipsim_core::store::QueueStats;
    let now = 60_000_000;
    assert_eq!(store.queue_stats(now).await.unwrap(), QueueStats::default());
    let acc = store.create_account("stats").await.unwrap().id;
    store
        .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    enqueue(store, &acc, &[Event::Sms, Event::Sms], now - 5000).await;
    enqueue(store, &acc, &[Event::Sms], now - 1000).await;
    // Two events of one call: the second waits behind the first, pending but not due.
    store
        .ingest(
            &[
                call_message(&acc, Event::IncomingCallStart, "call_s"),
                call_message(&acc, Event::IncomingCallEnd, "call_s"),
            ],
            now - 500,
        )
        .await
        .unwrap();
    // One scheduled for later is pending, not due.
    enqueue(store, &acc, &[Event::Tags], now + 60_000).await;
    let stats = store.queue_stats(now).await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            pending: 6,
            due: 4,
            oldest_due_ms: Some(now - 5000),
            in_flight: 0,
            paused_integrations: 0,
        }
    );
    let claimed = store.claim_due(now, 2, 10_000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let stats = store.queue_stats(now).await.unwrap();
    assert_eq!((stats.pending, stats.due, stats.in_flight), (4, 2, 2));
    assert_eq!(stats.oldest_due_ms, Some(now - 1000));

    // A paused integration's deliveries wait (pending, never due); the integration is counted.
    let other = store.create_account("gone").await.unwrap().id;
    store
        .put_integration(&other, update("https://example.org/", false, Some(EventSet::ALL)))
        .await
        .unwrap();
    enqueue(store, &other, &[Event::Sms], now - 9000).await;
    assert!(store.pause_integration(&other, "gone", now).await.unwrap());
    let stats = store.queue_stats(now).await.unwrap();
    assert_eq!(stats.paused_integrations, 1);
    assert_eq!((stats.pending, stats.due), (5, 2));
    assert_eq!(stats.oldest_due_ms, Some(now - 1000));
}

async fn deleting_an_account_erases_everything_of_it(store: &dyn Store) {
    use sipsim_core::secret::SecretHash;
    use sipsim_core::store::Session;
    let now = 70_000_000;
    let mut accounts = Vec::new();
    for name in ["leaving", "staying"] {
        let acc = store.create_account(name).await.unwrap().id;
        store
            .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
            .await
            .unwrap();
        let (client, _) = sipsim_store::testing::api_client(store, &acc, ScopeSet::all()).await;
        let user = store
            .create_user(&acc, &format!("{name}@example.com"), "$argon2id$fake")
            .await
            .unwrap();
        store
            .create_session(&Session {
                token_hash: SecretHash::of(name),
                user_id: user.id,
                csrf_token: "csrf".into(),
                expires_at_ms: now + 1000,
            })
            .await
            .unwrap();
        let outcomes =
            store.ingest(&[message(&acc, Event::Sms, Some("key-1"))], now).await.unwrap();
        let message_id = outcomes[0].message_id().clone();
        // One attempt logged.
        let claimed = store.claim_due(now, 10, 10_000, &Shares::UNLIMITED).await.unwrap();
        for c in claimed.iter().filter(|c| c.account_id == acc) {
            one_attempt(store, c, Completion::Failed).await;
        }
        accounts.push((acc, client.id, message_id));
    }
    let revocations_before = store.revocations_after(0).await.unwrap().len();

    let (gone, gone_client, gone_message) = &accounts[0];
    assert!(store.delete_account(gone).await.unwrap());
    assert!(!store.delete_account(gone).await.unwrap(), "already gone");

    assert_eq!(store.get_account(gone).await.unwrap(), None);
    assert_eq!(store.get_client(gone_client).await.unwrap(), None);
    let revocations = store.revocations_after(0).await.unwrap();
    assert_eq!(revocations.len(), revocations_before + 1);
    assert_eq!(revocations.last().unwrap().client_id, *gone_client);
    assert!(store.get_integration(gone).await.unwrap().is_none());
    assert_eq!(store.get_user_by_email("leaving@example.com").await.unwrap(), None);
    assert!(store.get_session(&SecretHash::of("leaving"), now).await.unwrap().is_none());
    assert_eq!(store.message_body(gone_message).await.unwrap(), None);
    assert!(store.list_deliveries(gone, &Default::default(), None, 100).await.unwrap().is_empty());
    assert_eq!(store.queue_stats(now).await.unwrap().pending, 0);

    // The other account keeps everything.
    let (kept, kept_client, kept_message) = &accounts[1];
    assert!(store.get_account(kept).await.unwrap().is_some());
    assert!(store.get_client(kept_client).await.unwrap().is_some());
    assert!(store.message_body(kept_message).await.unwrap().is_some());
    let deliveries = store.list_deliveries(kept, &Default::default(), None, 100).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(store.list_attempts(&deliveries[0].id).await.unwrap().len(), 1);
    assert!(store.get_session(&SecretHash::of("staying"), now).await.unwrap().is_some());
    // Its idempotency key still deduplicates.
    let again = store.ingest(&[message(kept, Event::Sms, Some("key-1"))], now).await.unwrap();
    assert!(matches!(again[0], IngestOutcome::Duplicate { .. }), "{again:?}");
}

async fn an_account_can_keep_its_messages_shorter_or_longer(store: &dyn Store) {
    const DAY: i64 = 24 * 3600 * 1000;
    let now = 100 * DAY;
    let default_cutoff = now - 30 * DAY;
    let mut accounts = Vec::new();
    for (name, retention) in [("short", Some(DAY)), ("default", None), ("long", Some(60 * DAY))] {
        let acc = store.create_account(name).await.unwrap().id;
        store
            .put_integration(&acc, update("https://example.com/", false, Some(EventSet::ALL)))
            .await
            .unwrap();
        assert!(store.set_retention(&acc, retention).await.unwrap());
        // A finished message 2 days old and one 40 days old.
        let mut ids = Vec::new();
        for age in [2 * DAY, 40 * DAY] {
            let at = now - age;
            let out = store.ingest(&[message(&acc, Event::Sms, None)], at).await.unwrap();
            let IngestOutcome::Enqueued { delivery_id, .. } = out[0].clone() else { panic!() };
            let claimed = store.claim_due(at, 10, 1000, &Shares::UNLIMITED).await.unwrap();
            assert_eq!(claimed.len(), 1);
            one_attempt(store, &claimed[0], Completion::Succeeded).await;
            ids.push(delivery_id);
        }
        accounts.push((acc, ids));
    }
    assert!(!store.set_retention(&AccountId::generate(), Some(DAY)).await.unwrap());
    let pruned = store.prune(default_cutoff, 0, now).await.unwrap();
    assert_eq!(pruned, 3);
    let kept = |i: usize, j: usize| {
        let id = accounts[i].1[j].clone();
        async move { store.get_delivery(&id).await.unwrap().is_some() }
    };
    // One day: both go. The default 30 days: the 40-day-old one goes. Sixty days: both stay.
    assert!(!kept(0, 0).await && !kept(0, 1).await);
    assert!(kept(1, 0).await && !kept(1, 1).await);
    assert!(kept(2, 0).await && kept(2, 1).await);
    // Back to the default.
    assert!(store.set_retention(&accounts[2].0, None).await.unwrap());
    assert_eq!(store.prune(default_cutoff, 0, now).await.unwrap(), 1);
    assert!(kept(2, 0).await && !kept(2, 1).await);
}

/// The settings version moves with every change an integration cache must notice, from any
/// process, and not with delivery bookkeeping (the hot path writes that).
async fn the_settings_version_moves_with_settings_changes_only(store: &dyn Store) {
    let now = 21_000_000;
    let v = || async { store.settings_version().await.unwrap() };
    let start = v().await;
    let acc = store.create_account("versioned").await.unwrap().id;
    assert_eq!(v().await, start, "an account alone is no setting");
    let sms: EventSet = [Event::Sms].into_iter().collect();
    store.put_integration(&acc, update("https://example.com/", false, Some(sms))).await.unwrap();
    let created = v().await;
    assert!(created > start, "creating an integration moves it");
    store.change_subscription(&acc, SubscriptionChange::Subscribe(Event::Rating)).await.unwrap();
    let subscribed = v().await;
    assert!(subscribed > created, "a subscription moves it");

    // A failing attempt (it sets the integration's failing_since) and a success do not.
    store.ingest(&[message(&acc, Event::Sms, None)], now).await.unwrap();
    let claimed = store.claim_due(now, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    assert_eq!(claimed.len(), 1);
    finish(
        store,
        &claimed[0].id,
        &claimed[0].lease_token,
        &record(now, Some(500), None),
        Completion::RetryAt(now + 10),
    )
    .await
    .unwrap();
    let retry = store.claim_due(now + 10, 10, 1000, &Shares::UNLIMITED).await.unwrap();
    one_attempt(store, &retry[0], Completion::Succeeded).await;
    assert_eq!(v().await, subscribed, "delivery bookkeeping leaves it alone");

    let mut last = subscribed;
    let mut moved = |what: &str, now_v: i64| {
        assert!(now_v > last, "{what} moves it");
        last = now_v;
    };
    store.rotate_signing_secret(&acc, &SigningSecret::generate(), now + 1000).await.unwrap();
    moved("regenerating the secret", v().await);
    store.pause_integration(&acc, "test", now).await.unwrap();
    moved("pausing", v().await);
    store.resume_integration(&acc, sipsim_core::store::KeptDeliveries::Deliver, now).await.unwrap();
    moved("resuming", v().await);
    store.remove_integration(&acc).await.unwrap();
    moved("removing the integration", v().await);
    let other = store.create_account("erased").await.unwrap().id;
    store.put_integration(&other, update("https://example.com/", false, None)).await.unwrap();
    moved("creating another", v().await);
    store.delete_account(&other).await.unwrap();
    moved("erasing an account with an integration", v().await);
}

macro_rules! on_both_backends {
    ($($suite:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $suite() {
                    let (store, _dir) = super::sqlite().await;
                    super::$suite(super::FromStore::from_store(&store)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $suite() {
                    let Some(db) =
                        sipsim_store::testing::postgres_test_db(stringify!($suite)).await
                    else {
                        return;
                    };
                    let pg = super::postgres(db.url()).await;
                    let store: std::sync::Arc<dyn sipsim_core::Store> =
                        std::sync::Arc::new(pg.clone());
                    super::$suite(super::FromStore::from_store(&store)).await;
                    pg.close().await;
                    db.drop_database().await;
                }
            )*
        }
    };
}

/// What a suite function takes: most a `&dyn Store`, those that spawn tasks the `Arc`.
trait FromStore<'a> {
    fn from_store(store: &'a Arc<dyn Store>) -> Self;
}

impl<'a> FromStore<'a> for &'a dyn Store {
    fn from_store(store: &'a Arc<dyn Store>) -> Self {
        &**store
    }
}

impl<'a> FromStore<'a> for &'a Arc<dyn Store> {
    fn from_store(store: &'a Arc<dyn Store>) -> Self {
        store
    }
}

async fn postgres(url: &str) -> PgStore {
    let store = PgStore::open(url, 8).await.unwrap();
    // The template is migrated already: migrating again is a no-op.
    store.migrate().await.unwrap();
    store
}

on_both_backends!(
    accounts_and_clients,
    delivery_rates_and_backlog,
    one_calls_deliveries_in_ingest_order,
    integration_lifecycle,
    concurrent_subscriptions_all_survive,
    settings_keep_the_first_value,
    ingest_snapshots_subscriptions_and_dedups,
    group_commit_keeps_each_batch_atomic,
    claims_share_slots_round_robin_and_unclaim_restores,
    a_calls_events_go_out_one_at_a_time_in_order,
    results_say_when_a_calls_next_event_became_due,
    retention_prunes_finished_old_messages_only,
    claims_lease_fence_and_retry,
    deliveries_list_page_resend_and_log_tests,
    pause_keeps_deliveries_until_resumed,
    failing_integrations_pause_after_the_period,
    failure_notices_are_claimed_once_per_episode,
    users_and_sessions,
    a_regenerated_secret_keeps_the_old_one_for_a_while,
    resend_failed_and_attempt_buckets,
    concurrent_resends_of_all_failed_queue_each_message_once,
    stored_secrets_are_listed_and_rewritten_only_if_unchanged,
    queue_stats_count_what_waits,
    deleting_an_account_erases_everything_of_it,
    an_account_can_keep_its_messages_shorter_or_longer,
    the_settings_version_moves_with_settings_changes_only,
);
