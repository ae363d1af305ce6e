//! Failure emails: which one an integration in trouble is owed, by rules that read only what the
//! store knows of it. The notifier (in `sipsimd`) asks the store for the integrations in trouble,
//! asks [`NoticeFacts::owed`] what each is owed, claims that notice in the store (one node sends
//! it) and sends it.
//!
//! Three kinds: *paused* (410 Gone, or failing for the whole pause period), *failing* (every
//! attempt has failed for an hour) and *recovered* (a delivery succeeded after one of the other two
//! was sent). Each notice is about an *episode*, a number that names the trouble: the pause's time,
//! the time the failures began, or — for a recovery — when the alert it answers was sent. A notice
//! is sent once per episode, and at most once a day per kind.

use crate::AccountId;
use crate::store::IntegrationState;

/// A day, in ms: at most one notice per integration per kind in this long.
pub const ONCE_PER_MS: i64 = 24 * 3600 * 1000;

/// What a notice says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Every delivery attempt has failed for an hour (the integration is still enabled).
    Failing,
    /// The integration was paused: its endpoint answered 410 Gone, or failed for the pause period.
    Paused,
    /// A delivery succeeded after a *failing* or *paused* notice was sent.
    Recovered,
}

impl NoticeKind {
    /// Every kind.
    pub const ALL: [NoticeKind; 3] =
        [NoticeKind::Failing, NoticeKind::Paused, NoticeKind::Recovered];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Failing => "failing",
            NoticeKind::Paused => "paused",
            NoticeKind::Recovered => "recovered",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The last notice of one kind that was sent for an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentNotice {
    /// The episode it was about.
    pub episode: i64,
    /// When it was sent, Unix ms.
    pub sent_at_ms: i64,
}

/// What the store knows of one integration that may be owed a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeFacts {
    /// Its account.
    pub account_id: AccountId,
    /// Where it delivers.
    pub webhook_url: String,
    /// Enabled, paused or disabled.
    pub state: IntegrationState,
    /// Why it is paused, when it is.
    pub paused_reason: Option<String>,
    /// When it was paused, Unix ms (`None` for pauses older than failure emails: never notified).
    pub paused_at_ms: Option<i64>,
    /// Since when every attempt to it has failed, Unix ms.
    pub failing_since_ms: Option<i64>,
    /// The last *failing* notice sent.
    pub failing: Option<SentNotice>,
    /// The last *paused* notice sent.
    pub paused: Option<SentNotice>,
    /// The last *recovered* notice sent.
    pub recovered: Option<SentNotice>,
}

/// A notice an integration is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    /// Which.
    pub kind: NoticeKind,
    /// The episode it is about. For [`NoticeKind::Recovered`]: when the alert it answers was sent,
    /// and it is owed only if a delivery has succeeded since.
    pub episode: i64,
}

/// What an integration's endpoint answered lately: read from its newest deliveries (a bounded
/// window, so a backlog costs nothing), for a notice's "last response" and for telling a recovery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentResponses {
    /// The latest attempt's outcome.
    pub last: Option<LastResponse>,
    /// When a delivery last succeeded, Unix ms.
    pub last_success_ms: Option<i64>,
}

/// One attempt's outcome, as a notice tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResponse {
    /// When, Unix ms.
    pub at_ms: i64,
    /// The HTTP status, when the endpoint answered.
    pub status_code: Option<u16>,
    /// What went wrong, when it did (no answer, a timeout, a refused address, …).
    pub error: Option<String>,
}

impl NoticeFacts {
    /// The last notice of `kind` sent.
    pub fn sent(&self, kind: NoticeKind) -> Option<SentNotice> {
        match kind {
            NoticeKind::Failing => self.failing,
            NoticeKind::Paused => self.paused,
            NoticeKind::Recovered => self.recovered,
        }
    }

    /// The notice this integration is owed at `now_ms`, when failures for `failing_after_ms` make
    /// a *failing* notice: a pause not yet told of; else failures older than that not yet told of;
    /// else, while it is enabled with no failure since the last success, the recovery from the
    /// last alert not yet answered. `None` when nothing is owed, or when the kind's last notice
    /// went out less than a day ago ([`ONCE_PER_MS`]).
    pub fn owed(&self, now_ms: i64, failing_after_ms: i64) -> Option<Owed> {
        let owed = match self.state {
            IntegrationState::Paused => {
                Owed { kind: NoticeKind::Paused, episode: self.paused_at_ms? }
            }
            IntegrationState::Disabled => return None,
            IntegrationState::Enabled => match self.failing_since_ms {
                Some(since) if since <= now_ms - failing_after_ms => {
                    Owed { kind: NoticeKind::Failing, episode: since }
                }
                Some(_) => return None,
                None => {
                    let alert = [self.failing, self.paused]
                        .into_iter()
                        .flatten()
                        .max_by_key(|s| s.sent_at_ms)?;
                    Owed { kind: NoticeKind::Recovered, episode: alert.sent_at_ms }
                }
            },
        };
        match self.sent(owed.kind) {
            Some(last) if last.episode == owed.episode => None,
            Some(last) if last.sent_at_ms > now_ms - ONCE_PER_MS => None,
            _ => Some(owed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1000;
    const NOW: i64 = 1_800_000_000_000;

    fn facts(state: IntegrationState) -> NoticeFacts {
        NoticeFacts {
            account_id: AccountId::generate(),
            webhook_url: "https://crm.example.com/hooks".into(),
            state,
            paused_reason: None,
            paused_at_ms: None,
            failing_since_ms: None,
            failing: None,
            paused: None,
            recovered: None,
        }
    }

    fn sent(episode: i64, sent_at_ms: i64) -> Option<SentNotice> {
        Some(SentNotice { episode, sent_at_ms })
    }

    #[test]
    fn failures_make_a_notice_after_an_hour_once_per_episode() {
        let mut f = facts(IntegrationState::Enabled);
        f.failing_since_ms = Some(NOW - HOUR + 1);
        assert_eq!(f.owed(NOW, HOUR), None, "not an hour yet");
        f.failing_since_ms = Some(NOW - HOUR);
        assert_eq!(
            f.owed(NOW, HOUR),
            Some(Owed { kind: NoticeKind::Failing, episode: NOW - HOUR })
        );
        f.failing = sent(NOW - HOUR, NOW);
        assert_eq!(f.owed(NOW + 1, HOUR), None, "told of this episode");
        assert_eq!(f.owed(NOW + 30 * ONCE_PER_MS, HOUR), None, "still the same episode");
    }

    #[test]
    fn a_kind_goes_out_at_most_once_a_day() {
        let mut f = facts(IntegrationState::Enabled);
        f.failing = sent(NOW - 5 * HOUR, NOW - 4 * HOUR);
        f.failing_since_ms = Some(NOW - 2 * HOUR); // a new episode: it failed again
        assert_eq!(f.owed(NOW, HOUR), None, "the last failing notice is 4 hours old");
        let later = NOW - 4 * HOUR + ONCE_PER_MS;
        assert_eq!(f.owed(later, HOUR).map(|o| o.kind), Some(NoticeKind::Failing));
    }

    #[test]
    fn a_pause_is_told_of_once_and_comes_before_failures() {
        let mut f = facts(IntegrationState::Paused);
        f.failing_since_ms = Some(NOW - 100 * HOUR);
        assert_eq!(f.owed(NOW, HOUR), None, "paused before failure emails existed");
        f.paused_at_ms = Some(NOW - 1000);
        assert_eq!(f.owed(NOW, HOUR), Some(Owed { kind: NoticeKind::Paused, episode: NOW - 1000 }));
        f.paused = sent(NOW - 1000, NOW);
        assert_eq!(f.owed(NOW + ONCE_PER_MS * 3, HOUR), None);
    }

    #[test]
    fn a_recovery_answers_the_last_alert_once() {
        let mut f = facts(IntegrationState::Enabled);
        assert_eq!(f.owed(NOW, HOUR), None, "no alert, nothing to recover from");
        f.failing = sent(NOW - 10 * HOUR, NOW - 9 * HOUR);
        f.paused = sent(NOW - 3 * HOUR, NOW - 2 * HOUR);
        let owed = Some(Owed { kind: NoticeKind::Recovered, episode: NOW - 2 * HOUR });
        assert_eq!(f.owed(NOW, HOUR), owed, "answers the latest alert");
        f.recovered = sent(NOW - 2 * HOUR, NOW);
        assert_eq!(f.owed(NOW + ONCE_PER_MS * 2, HOUR), None, "answered");
        f.failing_since_ms = Some(NOW);
        f.recovered = None;
        assert_eq!(f.owed(NOW + 1, HOUR), None, "failing again: no recovery");
        f.state = IntegrationState::Disabled;
        f.failing_since_ms = None;
        assert_eq!(f.owed(NOW, HOUR), None, "a disabled integration is owed nothing");
    }

    #[test]
    fn kinds_have_stored_names() {
        for kind in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(NoticeKind::parse("other"), None);
    }
}
