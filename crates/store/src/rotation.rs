//! Fair claims: which accounts a claim takes due work from, and how much. SQLite runs the visit
//! below and works out the shares here; PostgreSQL does both in `sipsim_claim_turn` (migration
//! 0011), the same rule next to the data so that a claim is one round trip, and the node keeps the
//! rotation's place with [`Rotation::advance`] for both.
//!
//! A claim first visits the accounts with scheduled work in turn (a *loose index scan* of
//! `deliveries_due_by_account`: one index seek per account, however much each has queued), starting
//! after the account where the previous claim stopped and wrapping around. It then gives each visited
//! account that has work due now at most its free slots, until the claim's limit is reached, and takes
//! each account's share oldest due first through the same index. No statement reads or sorts the whole
//! due set, so an account with 50,000 due retries costs a claim what an account with one does.

use std::sync::Mutex;

use sipsim_core::queue::Shares;
use sipsim_core::{AccountId, StoreError};

use crate::rows::{Columns, corrupt};

/// Most accounts one claim visits. More accounts than this with scheduled work are served over
/// several claims, the rotation going on where the last one stopped.
pub(crate) const ACCOUNTS_PER_PASS: i64 = 256;

/// How many accounts a claim visits: each account given work takes at least one of the claim's
/// `limit`, and a full account takes none, so more than `limit` plus the full accounts is never
/// needed (a claim for one freed slot visits a couple of accounts, not 256: a visit costs about
/// ten microseconds per account, and claims are frequent).
pub(crate) fn accounts_to_visit(shares: &Shares, limit: u32) -> i64 {
    let full = shares.full_accounts();
    let needed = i64::from(limit).saturating_add(full as i64);
    needed.clamp(1, ACCOUNTS_PER_PASS)
}

/// The statement that visits the accounts in turn (SQLite). It binds the account the previous claim
/// stopped at (`''` at first) and how many accounts to visit ([`accounts_to_visit`]) as `?1`, `?2`,
/// and returns, in visiting order, each account with scheduled work, when its earliest scheduled
/// delivery is due (one index seek: a backlog of 50,000 costs what one delivery does), and whether
/// its integration is enabled (1 or 0). The first part goes up from the
/// last account, the second wraps around from the first account up to it.
pub(crate) fn visit_sql() -> String {
    let (last, most) = ("?1", "?2");
    let next = |after: &str| {
        format!(
            "(SELECT account_id FROM deliveries \
              WHERE status = 'pending' AND next_attempt_at IS NOT NULL AND {after} \
              ORDER BY account_id LIMIT 1)"
        )
    };
    format!(
        "WITH RECURSIVE \
         up(account, step) AS ( \
            SELECT {first_up}, CAST(1 AS BIGINT) \
            UNION ALL \
            SELECT {next_up}, up.step + 1 FROM up \
            WHERE up.account IS NOT NULL AND up.step < CAST({most} AS BIGINT)), \
         around(account, step) AS ( \
            SELECT {first_around}, (SELECT COUNT(*) FROM up WHERE account IS NOT NULL) + 1 \
            UNION ALL \
            SELECT {next_around}, around.step + 1 FROM around \
            WHERE around.account IS NOT NULL AND around.step < CAST({most} AS BIGINT)), \
         visited(account, step) AS ( \
            SELECT account, step FROM up WHERE account IS NOT NULL \
            UNION ALL \
            SELECT account, step FROM around \
            WHERE account IS NOT NULL AND step <= CAST({most} AS BIGINT)) \
         SELECT v.account, \
                (SELECT d.next_attempt_at FROM deliveries d \
                 WHERE d.account_id = v.account AND d.status = 'pending' \
                   AND d.next_attempt_at IS NOT NULL \
                 ORDER BY d.next_attempt_at LIMIT 1), \
                CAST(CASE WHEN i.state = 'enabled' THEN 1 ELSE 0 END AS BIGINT) \
         FROM visited v LEFT JOIN integrations i ON i.account_id = v.account \
         ORDER BY v.step",
        first_up = next(&format!("account_id > {last}")),
        next_up = next("account_id > up.account"),
        first_around = next(&format!("account_id <= {last}")),
        next_around = next(&format!("account_id > around.account AND account_id <= {last}")),
    )
}

/// One account a claim visited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Visited {
    pub(crate) account: AccountId,
    /// When its earliest scheduled delivery is due (Unix ms).
    pub(crate) first_due: Option<i64>,
    /// Whether its integration is enabled.
    pub(crate) enabled: bool,
}

impl Visited {
    /// Reads a row of [`visit_sql`].
    pub(crate) fn read(row: &impl Columns) -> Result<Visited, StoreError> {
        Ok(Visited {
            account: AccountId::parse(&row.text(0)?).map_err(corrupt)?,
            first_due: row.opt_int(1)?,
            enabled: row.int(2)? == 1,
        })
    }
}

/// Where the last claim stopped, per store (so per node): the next one goes on after it.
#[derive(Debug, Default)]
pub(crate) struct Rotation {
    last: Mutex<String>,
}

impl Rotation {
    /// The account the previous claim stopped at (`""` before the first).
    pub(crate) fn last(&self) -> String {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        // A poisoned lock only means a panic while copying a string; the value is still usable.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each visited account's share, in visiting order: an account with work due at `now` and an
    /// enabled integration may be given up to its free slots (never more than `limit`). The claim
    /// takes the shares in this order and stops at `limit` deliveries in all, so an account
    /// with less due than its share leaves the rest to the accounts after it. PostgreSQL's
    /// `sipsim_claim_turn` applies the same rule; the store tests hold both to it.
    pub(crate) fn shares(
        visited: &[Visited],
        shares: &Shares,
        now: i64,
        limit: u32,
    ) -> Vec<(AccountId, u32)> {
        visited
            .iter()
            .filter(|v| v.enabled && v.first_due.is_some_and(|at| at <= now))
            .map(|v| (v.account.clone(), shares.free(&v.account).min(limit)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Remembers where the next claim goes on: after the last account (in visiting order) this
    /// claim took anything from, or, if it took nothing, after the last account it visited.
    /// `visited` are the accounts the claim visited, in visiting order.
    pub(crate) fn advance<'a, 'b>(
        &self,
        visited: impl DoubleEndedIterator<Item = &'a AccountId> + Clone,
        claimed: impl IntoIterator<Item = &'b AccountId>,
    ) {
        let claimed: std::collections::HashSet<&AccountId> = claimed.into_iter().collect();
        let stop = visited.clone().rev().find(|v| claimed.contains(v)).or(visited.last());
        if let Some(v) = stop {
            *self.lock() = v.as_str().to_owned();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visited(id: &str, first_due: Option<i64>, enabled: bool) -> Visited {
        Visited { account: account(id), first_due, enabled }
    }

    #[test]
    fn a_small_claim_visits_few_accounts() {
        let mut shares = Shares::uniform(4, Vec::new());
        assert_eq!(accounts_to_visit(&shares, 1), 1);
        assert_eq!(accounts_to_visit(&shares, 0), 1, "always at least one");
        shares.in_use = vec![(account("acc_a"), 4), (account("acc_b"), 1)];
        assert_eq!(accounts_to_visit(&shares, 3), 4, "a full account may come first");
        assert_eq!(accounts_to_visit(&shares, 10_000), ACCOUNTS_PER_PASS);
    }

    /// `acc_a` → a valid id made of that letter, so ids sort as their letters do.
    fn account(id: &str) -> AccountId {
        let letter = id.trim_start_matches("acc_");
        AccountId::parse(&format!("acc_{}", letter.repeat(26))).expect("an account id")
    }

    #[test]
    fn an_account_may_be_given_its_free_slots_if_it_has_work_due_and_is_enabled() {
        let visited = [
            visited("acc_a", Some(10), true),
            visited("acc_b", Some(10), true),
            visited("acc_c", Some(11), true),
            visited("acc_d", Some(9), false),
            visited("acc_e", None, true),
            visited("acc_f", Some(1), true),
        ];
        let shares = Shares::uniform(4, vec![(account("acc_a"), 3), (account("acc_b"), 4)]);
        assert_eq!(
            Rotation::shares(&visited, &shares, 10, 100),
            vec![(account("acc_a"), 1), (account("acc_f"), 4)]
        );
        assert_eq!(
            Rotation::shares(&visited, &Shares::UNLIMITED, 10, 3),
            vec![(account("acc_a"), 3), (account("acc_b"), 3), (account("acc_f"), 3)]
        );
    }

    #[test]
    fn the_next_claim_goes_on_after_the_last_account_served_or_else_visited() {
        let rotation = Rotation::default();
        assert_eq!(rotation.last(), "");
        let visited = [
            visited("acc_a", Some(5), true),
            visited("acc_b", Some(5), true),
            visited("acc_c", Some(5), true),
        ];
        let order = || visited.iter().map(|v| &v.account);
        rotation.advance(order(), [&account("acc_b"), &account("acc_a")]);
        assert_eq!(rotation.last(), account("acc_b").as_str());
        rotation.advance(order(), []);
        assert_eq!(rotation.last(), account("acc_c").as_str());
        rotation.advance(std::iter::empty(), []);
        assert_eq!(rotation.last(), account("acc_c").as_str());
    }
}
