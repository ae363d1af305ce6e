//! `sipsim deliveries list | resend`.

use clap::Args;
use sipsim_client::{Client, Delivery, DeliveryQuery};

use super::Failure;
use super::output::{Color, Out};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this state: pending, delivering, succeeded, failed or paused.
    #[arg(long)]
    status: Option<String>,
    /// Only this event.
    #[arg(long)]
    event: Option<String>,
    /// Only deliveries created at or after this RFC 3339 time (2025-01-15T10:30:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Only one call's deliveries, oldest first: a `pbx_id` (call events, voicemail, tags) or a
    /// `call_id` (speech, summary, rating), matched exactly.
    #[arg(long)]
    call: Option<String>,
    /// How many, 1 to 1000.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// The page token printed under the previous page.
    #[arg(long)]
    page: Option<String>,
}

fn last_result(d: &Delivery) -> String {
    match (d.last_status_code, &d.last_error) {
        (Some(code), Some(e)) => format!("HTTP {code}: {e}"),
        (Some(code), None) => format!("HTTP {code}"),
        (None, Some(e)) => e.clone(),
        (None, None) => "-".to_owned(),
    }
}

pub async fn list(client: &Client, out: &Out, args: ListArgs) -> Result<(), Failure> {
    let page = client
        .list_deliveries(&DeliveryQuery {
            status: args.status,
            event: args.event,
            since: args.since,
            call: args.call,
            limit: Some(args.limit),
            page: args.page,
        })
        .await?;
    if out.json {
        out.json(&page);
        return Ok(());
    }
    if page.data.is_empty() {
        println!("No deliveries.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page
        .data
        .iter()
        .map(|d| {
            let color = match d.status.as_str() {
                "succeeded" => Color::Green,
                "failed" => Color::Red,
                _ => Color::Yellow,
            };
            // Pad before painting, so escape codes do not skew the columns.
            vec![
                d.id.clone(),
                d.created_at.clone(),
                d.event.clone(),
                out.paint(color, &format!("{:<10}", d.status)),
                d.attempts.to_string(),
                last_result(d),
            ]
        })
        .collect();
    out.table(&["ID", "CREATED", "EVENT", "STATUS    ", "ATTEMPTS", "LAST RESULT"], &rows);
    if let Some(token) = page.pagination.page.filter(|_| page.pagination.has_more) {
        println!("More: sipsim deliveries list --page {token}");
    }
    Ok(())
}

pub async fn resend(client: &Client, out: &Out, id: &str) -> Result<(), Failure> {
    let delivery = client.resend_delivery(id).await?;
    if out.json {
        out.json(&delivery);
    } else {
        println!(
            "Queued {} ({} again, resend of {id}, X-Webhook-Id {}).",
            delivery.id, delivery.event, delivery.message_id
        );
    }
    Ok(())
}
