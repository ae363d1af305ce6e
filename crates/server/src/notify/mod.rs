//! Failure emails (issue 18): a notifier on every node that delivers asks the store, every few
//! seconds, which integrations are in trouble; for each notice one is owed
//! ([`sipsim_core::notice`]) it claims the notice in the store — so of many nodes on one
//! PostgreSQL database one sends it — and emails the account's dashboard users.
//!
//! A notice is marked sent once at least one copy was accepted by the SMTP server. When none was
//! (the server is down, say), the claim runs out and the notice is tried again: a failure email
//! is never given up because of an SMTP outage, and never sent twice within its claim.

pub mod email;
pub mod mail;

use std::sync::Arc;
use std::time::Duration;

use sipsim_core::Store;
use sipsim_core::clock::now_ms;
use sipsim_core::notice::{NoticeFacts, NoticeKind, ONCE_PER_MS, Owed};
use tokio_util::sync::CancellationToken;

use self::email::Context;
use self::mail::{MailSettings, Mailer};

/// How the notifier runs.
#[derive(Debug, Clone)]
pub struct NoticeConfig {
    /// `smtp_url` and `smtp_from` (with `extra_ca_certs`): `None` sends nothing.
    pub mail: Option<MailSettings>,
    /// `public_url`: the dashboard's address, for the links; without a trailing `/`.
    pub public_url: String,
    /// `notify_failing_after`: failures for this long make a *failing* notice (1 h).
    pub failing_after: Duration,
    /// How often the store is asked what is owed: a notice goes out within this (plus sending).
    pub every: Duration,
    /// How long a claim keeps other nodes off a notice: longer than sending to every recipient
    /// takes (each SMTP command has 10 s), and so the delay before a failed send is tried again.
    pub claim: Duration,
}

impl Default for NoticeConfig {
    fn default() -> Self {
        NoticeConfig {
            mail: None,
            public_url: "http://127.0.0.1:8080".to_owned(),
            failing_after: Duration::from_secs(3600),
            every: Duration::from_secs(5),
            claim: Duration::from_secs(120),
        }
    }
}

/// Says in the log, once at start, whether failure emails are sent, and where from.
pub fn say_whether_on(config: &NoticeConfig) {
    match &config.mail {
        None => tracing::info!(
            "failure emails are off: set SIPSIM_SMTP_URL and SIPSIM_SMTP_FROM to email an account's dashboard users when its webhooks fail"
        ),
        Some(mail) => tracing::info!(
            smtp_host = %mail.smtp.host, smtp_port = mail.smtp.port, tls = ?mail.smtp.tls,
            public_url = %config.public_url, "failure emails are on"
        ),
    }
}

/// Sends failure emails.
pub struct Notifier {
    store: Arc<dyn Store>,
    mailer: Mailer,
    config: NoticeConfig,
}

impl Notifier {
    /// A notifier on `store` as `config` says; `None` when no SMTP server is configured.
    pub fn new(store: Arc<dyn Store>, config: &NoticeConfig) -> anyhow::Result<Option<Notifier>> {
        let Some(mail) = &config.mail else { return Ok(None) };
        Ok(Some(Notifier { store, mailer: Mailer::new(mail)?, config: config.clone() }))
    }

    /// Looks for owed notices every [`NoticeConfig::every`] until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.every) => {}
                _ = shutdown.cancelled() => return,
            }
            // A shutdown does not wait for a slow SMTP server: a notice cut short keeps its claim,
            // which runs out, and is sent by the next look of any node.
            tokio::select! {
                looked = self.round() => if let Err(e) = looked {
                    tracing::warn!(error = %e, "looking for failure emails to send failed; trying again shortly");
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One look: sends every notice owed now.
    pub async fn round(&self) -> Result<(), sipsim_core::StoreError> {
        let failing_after = self.config.failing_after.as_millis() as i64;
        let now = now_ms();
        for facts in self.store.notice_facts(now - failing_after).await? {
            if let Some(owed) = facts.owed(now, failing_after) {
                self.notify(&facts, owed).await?;
            }
        }
        Ok(())
    }

    /// Claims and sends one notice, unless another node has it or it is not owed after all.
    async fn notify(&self, facts: &NoticeFacts, owed: Owed) -> Result<(), sipsim_core::StoreError> {
        let account = &facts.account_id;
        // A recovery is owed only once a delivery has succeeded since the alert it answers.
        let mut recent = None;
        if owed.kind == NoticeKind::Recovered {
            let read = self.store.recent_responses(account).await?;
            if read.last_success_ms.is_none_or(|at| at <= owed.episode) {
                return Ok(());
            }
            recent = Some(read);
        }
        let now = now_ms();
        let until = now + self.config.claim.as_millis() as i64;
        if !self.store.claim_notice(account, owed, now, now - ONCE_PER_MS, until).await? {
            return Ok(());
        }
        let recent = match recent {
            Some(read) => read,
            None => self.store.recent_responses(account).await?,
        };
        let users = self.store.list_users(account).await?;
        let email = email::compose(
            facts,
            owed,
            &Context { public_url: &self.config.public_url, recent: &recent },
        );
        let mut accepted = 0;
        for user in &users {
            match self.mailer.send(&user.email, &email).await {
                Ok(()) => accepted += 1,
                Err(e) => tracing::warn!(
                    account_id = %account, user_id = %user.id, kind = owed.kind.as_str(), error = %e,
                    "a failure email was not accepted by the SMTP server"
                ),
            }
        }
        let kind = owed.kind.as_str();
        if accepted == 0 && !users.is_empty() {
            metrics::counter!("sipsim_notices_total", "kind" => kind, "outcome" => "failed")
                .increment(1);
            tracing::warn!(
                account_id = %account, kind, retry_in_s = self.config.claim.as_secs(),
                "no copy of a failure email was accepted; it will be tried again"
            );
            return Ok(());
        }
        self.store.notice_sent(account, owed, now_ms()).await?;
        metrics::counter!("sipsim_notices_total", "kind" => kind, "outcome" => "sent").increment(1);
        if users.is_empty() {
            tracing::info!(account_id = %account, kind, "a failure email had no one to go to: the account has no dashboard users");
        } else {
            tracing::info!(account_id = %account, kind, recipients = accepted, "sent a failure email");
        }
        Ok(())
    }
}
