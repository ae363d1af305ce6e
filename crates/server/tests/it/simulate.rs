//! `sipsimd simulate` as an operator runs it, beside a live server: what arrives is realistic.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sipsim_core::event::Event;
use sipsim_core::payload::Payload;

use crate::helpers::TestApp;
use crate::process::{argv, succeeded};
use sipsim_testkit::receiver::Receiver;

#[tokio::test(flavor = "multi_thread")]
async fn simulated_lifecycles_arrive_complete_and_in_order() {
    let app = TestApp::spawn_allowing_local_targets().await;
    let receiver = Receiver::answering(&[]).await;
    let account = app.account().await;
    let all: Vec<&str> = Event::CATALOG.iter().map(|e| e.name()).collect();
    app.local_integration(&account, &receiver.url("/hook"), &all).await;

    let out = succeeded(
        Command::new(env!("CARGO_BIN_EXE_sipsimd"))
            .args(argv!(
                "simulate --account {account} --rate 40 --duration 2s --speed 50 --seed 42 --json"
            ))
            .env("SIPSIM_DATABASE_URL", &app.database_url)
            .output(),
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = report["events"].as_u64().unwrap() as usize;
    assert!(events >= 40, "{report}");
    assert_eq!(report["enqueued"].as_u64().unwrap() as usize, events);
    assert_eq!(report["seed"], 42);

    let got = receiver.wait_for(events, Duration::from_secs(60)).await;
    assert_eq!(got.len(), events, "every simulated event is delivered once");

    // What arrived is what the report counted, and every body is its event's documented shape.
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    let mut calls: BTreeMap<String, Vec<(Event, Value)>> = BTreeMap::new();
    let mut ai: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
    for r in &got {
        let event = Event::from_name(r.header("x-webhook-event")).unwrap();
        Payload::parse(event, &r.body)
            .unwrap_or_else(|e| panic!("{event}: {e}: {}", String::from_utf8_lossy(&r.body)));
        *counted.entry(event.name().to_owned()).or_default() += 1;
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        if let Some(pbx) = body["pbx_id"].as_str() {
            calls.entry(pbx.to_owned()).or_default().push((event, body));
        } else if let Some(call_id) = body["call_id"].as_u64() {
            ai.entry(call_id).or_default().push(event);
        }
    }
    let reported: BTreeMap<String, u64> =
        serde_json::from_value(report["by_event"].clone()).unwrap();
    assert_eq!(counted, reported);
    assert!(calls.len() >= 5, "{} calls", calls.len());

    // Each call arrives as it happened: its start first, times never going back, one end.
    for (pbx, events) in &calls {
        let names: Vec<&str> = events.iter().map(|(e, _)| e.name()).collect();
        assert!(names[0].ends_with("_call_start"), "{pbx}: {names:?}");
        let ends = names
            .iter()
            .filter(|n| **n == "incoming_call_end" || **n == "outgoing_call_end")
            .count();
        assert_eq!(ends, 1, "{pbx}: {names:?}");
        let times: Vec<&str> = events.iter().map(|(_, b)| b["time"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{pbx}: {names:?} at {times:?}");
        for (_, body) in events {
            assert_eq!(body["caller"], events[0].1["caller"], "{pbx}");
        }
    }
    // Transcription, then summary, then rating, per call.
    for (call_id, events) in &ai {
        let rank = |e: &Event| match e {
            Event::Speech => 0,
            Event::Summary => 1,
            _ => 2,
        };
        assert!(events.windows(2).all(|w| rank(&w[0]) < rank(&w[1])), "call {call_id}: {events:?}");
    }
}
