//! `sipsimd notify test`: a sample failure email through the configured SMTP server, so an operator
//! sees at once whether the settings work.

use anyhow::{anyhow, bail};
use serde_json::json;
use sipsim_core::AccountId;
use sipsim_core::clock::now_ms;
use sipsim_core::notice::{LastResponse, NoticeFacts, NoticeKind, Owed, RecentResponses};
use sipsim_core::store::IntegrationState;

use super::Output;
use crate::config::Config;
use crate::notify::email::{Context, compose};
use crate::notify::mail::Mailer;

pub(super) async fn test(config: &Config, to: &str) -> anyhow::Result<Output> {
    let Some(mail) = &config.notices.mail else {
        bail!("failure emails are off: set SIPSIM_SMTP_URL and SIPSIM_SMTP_FROM");
    };
    let now = now_ms();
    let hour_ago = now - 3_600_000;
    let facts = NoticeFacts {
        account_id: AccountId::generate(),
        webhook_url: "https://crm.example.com/webhooks/sipsim".to_owned(),
        state: IntegrationState::Enabled,
        paused_reason: None,
        paused_at_ms: None,
        failing_since_ms: Some(hour_ago),
        failing: None,
        paused: None,
        recovered: None,
    };
    let recent = RecentResponses {
        last: Some(LastResponse { at_ms: now, status_code: Some(503), error: None }),
        last_success_ms: None,
    };
    let owed = Owed { kind: NoticeKind::Failing, episode: hour_ago };
    let mut email =
        compose(&facts, owed, &Context { public_url: &config.notices.public_url, recent: &recent });
    email.subject = format!("[test of sipsimd's SMTP settings] {}", email.subject);
    email.text = format!(
        "This is a test sent by `sipsimd notify test`: the endpoint and account below are made up.\n\n{}",
        email.text
    );
    email.message_id = format!("test.{now}.{}", email.message_id);
    Mailer::new(mail)?.send(to, &email).await.map_err(|e| {
        anyhow!(
            "the SMTP server at {}:{} did not take the email: {e}",
            mail.smtp.host,
            mail.smtp.port
        )
    })?;
    Ok(Output::ok(
        json!({ "sent": true, "to": to, "smtp_host": mail.smtp.host, "smtp_port": mail.smtp.port }),
        format!(
            "sent a sample failure email to {to} through {}:{}",
            mail.smtp.host, mail.smtp.port
        ),
    ))
}
