//! `sipsim webhooks available | list | enable | disable | schema`.

use indicatif::{ProgressBar, ProgressStyle};
use sipsim_client::{Client, Event, WebhookSetting};

use super::Failure;
use super::output::{Color, Out};

fn description(name: &str) -> &'static str {
    Event::from_name(name).map(Event::description).unwrap_or_default()
}

fn event_rows(events: &[String]) -> Vec<Vec<String>> {
    events.iter().map(|e| vec![e.clone(), description(e).to_owned()]).collect()
}

fn event_items(events: &[String]) -> Vec<serde_json::Value> {
    events.iter().map(|e| serde_json::json!({ "event": e })).collect()
}

/// `sipsim webhooks schema EVENT`: the payload's JSON Schema, always as JSON (it is one).
pub fn schema(event: &str) -> Result<(), Failure> {
    let Some(event) = Event::from_name(event) else {
        let hint = match sipsim_client::suggest_event(event) {
            Some(near) => format!(" Did you mean '{near}'?"),
            None => " See `sipsim webhooks available`, or `test`.".to_owned(),
        };
        return Err(Failure::usage(format!("Unknown event '{event}'.{hint}")));
    };
    let schema = sipsim_core::payload::schema::standalone_schema(event);
    println!("{}", serde_json::to_string_pretty(&schema).unwrap_or_default());
    Ok(())
}

pub async fn available(client: &Client, out: &Out) -> Result<(), Failure> {
    let events = client.available_events().await?;
    if out.json {
        out.json(&event_items(&events));
    } else {
        out.table(&["EVENT", "DESCRIPTION"], &event_rows(&events));
    }
    Ok(())
}

pub async fn list(client: &Client, out: &Out) -> Result<(), Failure> {
    let events = client.enabled_events().await?;
    if out.json {
        out.json(&event_items(&events));
    } else if events.is_empty() {
        println!("No events enabled. Enable some with `sipsim webhooks enable EVENT…` or `--all`.");
    } else {
        out.table(&["EVENT", "DESCRIPTION"], &event_rows(&events));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Enable,
    Disable,
}

pub async fn change(
    client: &Client,
    out: &Out,
    change: Change,
    names: Vec<String>,
    all: bool,
) -> Result<(), Failure> {
    // Every name is checked against the server's catalog first, so a typo changes nothing.
    let available = client.available_events().await?;
    let events = if all {
        available
    } else {
        let mut events: Vec<String> = Vec::new();
        for name in names {
            if !available.contains(&name) {
                let hint = match sipsim_client::nearest(&name, available.iter().map(String::as_str))
                {
                    Some(s) => format!(" Did you mean '{s}'?"),
                    None => String::new(),
                };
                return Err(Failure::usage(format!(
                    "unknown event '{name}'.{hint} `sipsim webhooks available` lists the valid names."
                )));
            }
            if !events.contains(&name) {
                events.push(name);
            }
        }
        events
    };
    let before = client.enabled_events().await?;
    let bar = if out.json || events.len() < 2 {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(events.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    };
    let mut setting: Option<WebhookSetting> = None;
    for event in &events {
        bar.set_message(event.clone());
        let result = match change {
            Change::Enable => client.enable_event(event).await,
            Change::Disable => client.disable_event(event).await,
        };
        match result {
            Ok(s) => setting = Some(s),
            Err(e) => {
                bar.abandon();
                return Err(e.into());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let Some(setting) = setting else {
        return Err(Failure::usage("no events given"));
    };
    if out.json {
        out.json(&setting);
        return Ok(());
    }
    let (verb, mark) = match change {
        Change::Enable => ("enabled", "+"),
        Change::Disable => ("disabled", "-"),
    };
    let mut changed = 0;
    for event in &events {
        let was = before.contains(event);
        let now = setting.subscribed_events.contains(event);
        if was != now {
            changed += 1;
            let color = if now { Color::Green } else { Color::Yellow };
            println!("{} {event}", out.paint(color, mark));
        } else {
            println!("{} {event} (already {verb})", out.paint(Color::Dim, "="));
        }
    }
    println!(
        "{changed} event(s) {verb}; {} of {} now enabled, delivered to {}.",
        setting.subscribed_events.len(),
        Event::CATALOG.len(),
        setting.webhook_url
    );
    if !setting.enabled {
        println!(
            "{}",
            out.paint(
                Color::Yellow,
                "The integration is switched off in the dashboard: nothing is delivered until it is on."
            )
        );
    }
    Ok(())
}
