//! What a failure email says: one notice, written once as paragraphs and labelled facts, rendered
//! as the plain-text part and the HTML part.

use sipsim_core::clock::rfc3339_seconds_from_ms as utc;
use sipsim_core::notice::{LastResponse, NoticeFacts, NoticeKind, Owed, RecentResponses};

use super::mail::Email;

/// What a notice needs beyond the store's facts.
pub struct Context<'a> {
    /// The dashboard's address (`SIPSIM_PUBLIC_URL`), without a trailing `/`.
    pub public_url: &'a str,
    /// What the endpoint answered lately.
    pub recent: &'a RecentResponses,
}

/// The email telling of `owed` about the integration `facts` describes.
pub fn compose(facts: &NoticeFacts, owed: Owed, context: &Context<'_>) -> Email {
    let url = facts.webhook_url.as_str();
    let deliveries = format!("{}/dashboard/deliveries", context.public_url);
    let settings = format!("{}/dashboard/integrations", context.public_url);
    let last = last_response(context.recent.last.as_ref());
    let (subject, opening, mut rows, closing) = match owed.kind {
        NoticeKind::Failing => (
            format!("Webhook deliveries to {url} are failing"),
            format!(
                "Every attempt to deliver an event to your webhook endpoint has failed since {}.",
                utc(owed.episode)
            ),
            vec![("Failing since", utc(owed.episode))],
            "Failed events are retried on their schedule; those that run out of retries can be sent \
             again from the Deliveries page. If every attempt keeps failing, the integration will be \
             paused."
                .to_owned(),
        ),
        NoticeKind::Paused => {
            let reason = facts.paused_reason.as_deref().unwrap_or("paused");
            let mut rows = vec![("Paused since", utc(owed.episode)), ("Reason", reason.to_owned())];
            if let Some(since) = facts.failing_since_ms {
                rows.push(("Failing since", utc(since)));
            }
            (
                format!("Webhook deliveries to {url} are paused"),
                format!(
                    "Deliveries to your webhook endpoint were paused at {}: {reason}.",
                    utc(owed.episode)
                ),
                rows,
                format!(
                    "New events are kept, not sent, until you resume the integration on the Webhooks \
                     page ({settings}), choosing to deliver the kept events or drop them."
                ),
            )
        }
        NoticeKind::Recovered => {
            let at = context.recent.last_success_ms.unwrap_or(owed.episode);
            (
                format!("Webhook deliveries to {url} are succeeding again"),
                format!(
                    "A delivery to your webhook endpoint succeeded at {}, after the failures we wrote \
                     to you about at {}.",
                    utc(at),
                    utc(owed.episode)
                ),
                vec![("Succeeded at", utc(at))],
                "Nothing more to do. Deliveries that failed for good meanwhile can be sent again \
                 from the Deliveries page."
                    .to_owned(),
            )
        }
    };
    rows.insert(0, ("Endpoint", url.to_owned()));
    rows.push(("Last response", last));
    rows.push(("Account", facts.account_id.to_string()));
    let host = url::Url::parse(context.public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "sipsim-webhooks".to_owned());
    Email {
        text: text(&opening, &rows, &closing, &deliveries),
        html: html(&opening, &rows, &closing, &deliveries),
        subject,
        message_id: format!(
            "notice.{}.{}.{}@{host}",
            owed.kind.as_str(),
            owed.episode,
            facts.account_id
        ),
    }
}

/// "HTTP 503 at …", or what happened instead of an answer.
fn last_response(last: Option<&LastResponse>) -> String {
    match last {
        None => "none recorded".to_owned(),
        Some(LastResponse { at_ms, status_code: Some(code), error }) => match error {
            Some(e) if !e.starts_with("HTTP ") => format!("HTTP {code} at {} ({e})", utc(*at_ms)),
            _ => format!("HTTP {code} at {}", utc(*at_ms)),
        },
        Some(LastResponse { at_ms, status_code: None, error }) => format!(
            "no HTTP response at {} ({})",
            utc(*at_ms),
            error.as_deref().unwrap_or("no answer")
        ),
    }
}

fn text(opening: &str, rows: &[(&str, String)], closing: &str, deliveries: &str) -> String {
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0) + 1;
    let mut out = format!("{opening}\n\n");
    for (label, value) in rows {
        out.push_str(&format!("{:<width$} {value}\n", format!("{label}:")));
    }
    out.push_str(&format!("\n{closing}\n\nSee the deliveries: {deliveries}\n"));
    out
}

fn html(opening: &str, rows: &[(&str, String)], closing: &str, deliveries: &str) -> String {
    let mut out = format!("<p>{}</p>\n<table>\n", escape(opening));
    for (label, value) in rows {
        out.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
            escape(label),
            escape(value)
        ));
    }
    let link = escape(deliveries);
    out.push_str(&format!(
        "</table>\n<p>{}</p>\n<p><a href=\"{link}\">See the deliveries</a></p>\n",
        escape(closing)
    ));
    out
}

/// Escaped for HTML as the dashboard's templates escape (askama's escaper).
fn escape(text: &str) -> String {
    let Ok(escaped) = askama::filters::escape(text, askama::filters::Html);
    escaped.to_string()
}

#[cfg(test)]
mod tests {
    use sipsim_core::AccountId;
    use sipsim_core::notice::SentNotice;
    use sipsim_core::store::IntegrationState;

    use super::*;

    const AT: i64 = 1_796_663_729_000; // 2026-12-07T17:15:29Z

    fn facts() -> NoticeFacts {
        NoticeFacts {
            account_id: AccountId::generate(),
            webhook_url: "https://crm.example.com/hooks?a=1&b=<2>".into(),
            state: IntegrationState::Enabled,
            paused_reason: None,
            paused_at_ms: None,
            failing_since_ms: Some(AT - 3_600_000),
            failing: None,
            paused: None,
            recovered: None,
        }
    }

    fn recent(status_code: Option<u16>, error: Option<&str>) -> RecentResponses {
        RecentResponses {
            last: Some(LastResponse { at_ms: AT, status_code, error: error.map(str::to_owned) }),
            last_success_ms: None,
        }
    }

    #[test]
    fn the_text_part_names_the_url_and_the_status_literally() {
        let recent = recent(Some(503), Some("HTTP 503"));
        let owed = Owed { kind: NoticeKind::Failing, episode: AT - 3_600_000 };
        let email = compose(
            &facts(),
            owed,
            &Context { public_url: "https://hooks.example.com", recent: &recent },
        );
        assert_eq!(
            email.subject,
            "Webhook deliveries to https://crm.example.com/hooks?a=1&b=<2> are failing"
        );
        assert!(
            email.text.contains("Endpoint:      https://crm.example.com/hooks?a=1&b=<2>\n"),
            "{}",
            email.text
        );
        assert!(
            email.text.contains("Last response: HTTP 503 at 2026-12-07T17:15:29Z\n"),
            "{}",
            email.text
        );
        assert!(email.text.contains("Failing since: 2026-12-07T16:15:29Z\n"), "{}", email.text);
        assert!(
            email
                .text
                .contains("See the deliveries: https://hooks.example.com/dashboard/deliveries\n")
        );
        assert!(email.html.contains("hooks?a=1&#38;b=&#60;2&#62;"), "escaped: {}", email.html);
        assert!(!email.html.contains("<2>"));
        assert!(email.message_id.starts_with("notice.failing."));
        assert!(email.message_id.ends_with("@hooks.example.com"));
    }

    #[test]
    fn a_pause_says_why_and_how_to_resume() {
        let mut f = facts();
        f.state = IntegrationState::Paused;
        f.paused_reason = Some("the endpoint answered 410 Gone".into());
        f.paused_at_ms = Some(AT);
        let recent = recent(Some(410), None);
        let owed = Owed { kind: NoticeKind::Paused, episode: AT };
        let email =
            compose(&f, owed, &Context { public_url: "http://127.0.0.1:8080", recent: &recent });
        assert!(
            email.text.contains("paused at 2026-12-07T17:15:29Z: the endpoint answered 410 Gone.")
        );
        assert!(email.text.contains("Last response: HTTP 410 at"), "{}", email.text);
        assert!(email.text.contains("http://127.0.0.1:8080/dashboard/integrations"));
    }

    #[test]
    fn no_answer_says_what_happened_and_a_recovery_says_when() {
        let recent = recent(None, Some("timed out after 2s"));
        let owed = Owed { kind: NoticeKind::Failing, episode: AT };
        let email = compose(&facts(), owed, &Context { public_url: "https://h", recent: &recent });
        assert!(email.text.contains(
            "Last response: no HTTP response at 2026-12-07T17:15:29Z (timed out after 2s)"
        ));

        let mut f = facts();
        f.failing = Some(SentNotice { episode: AT - 7_200_000, sent_at_ms: AT - 3_600_000 });
        let recovered = RecentResponses {
            last: Some(LastResponse { at_ms: AT, status_code: Some(200), error: None }),
            last_success_ms: Some(AT),
        };
        let owed = Owed { kind: NoticeKind::Recovered, episode: AT - 3_600_000 };
        let email = compose(&f, owed, &Context { public_url: "https://h", recent: &recovered });
        assert_eq!(
            email.subject,
            "Webhook deliveries to https://crm.example.com/hooks?a=1&b=<2> are succeeding again"
        );
        assert!(email.text.contains("succeeded at 2026-12-07T17:15:29Z, after the failures we wrote to you about at 2026-12-07T16:15:29Z"));
        assert!(email.text.contains("Last response: HTTP 200 at"));
    }
}
