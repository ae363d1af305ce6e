use std::collections::{BTreeMap, BTreeSet};

use sipsim_core::payload::Payload;

use super::*;

/// Many lifecycles of several companies, in emission order per lifecycle.
fn sample(seed: u64, n: usize) -> Vec<Vec<Planned>> {
    let mut rng = Rng::new(seed);
    let companies: Vec<Company> = (0..4).map(|_| Company::generate(&mut rng)).collect();
    let mut ids = Ids::starting_at(10_000);
    (0..n)
        .map(|i| {
            let company = &companies[i % companies.len()];
            lifecycle(&mut rng, company, &mut ids, 1_736_935_200_000 + i as i64 * 1000)
        })
        .collect()
}

fn is_e164(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or("x");
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn text<'a>(p: &'a Planned, key: &str) -> &'a str {
    p.payload[key].as_str().unwrap_or_default()
}

fn secs(p: &Planned) -> i64 {
    let t = time::OffsetDateTime::parse(
        text(p, "time"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    t.unix_timestamp()
}

#[test]
fn every_payload_is_valid_for_its_event() {
    for call in sample(1, 3000) {
        for p in &call {
            let bytes = serde_json::to_vec(&p.payload).unwrap();
            let parsed = Payload::parse(p.event, &bytes)
                .unwrap_or_else(|e| panic!("{}: {e}: {}", p.event, p.payload));
            assert_eq!(parsed.event(), p.event);
            for key in ["caller", "receiver"] {
                if let Some(n) = p.payload.get(key).and_then(|v| v.as_str()) {
                    assert!(is_e164(n), "{key} {n} is not E.164");
                }
            }
        }
    }
}

/// Every payload the simulator makes is valid against its event's schema in the served OpenAPI
/// document's `webhooks` section (checked by the `jsonschema` crate, formats included), and so are
/// the documented examples and the `test` event: schemas and payloads cannot drift apart.
#[test]
fn every_payload_matches_its_webhook_schema_in_the_served_document() {
    let doc = crate::app::openapi();
    let validator = |event: Event| {
        let pointer =
            format!("/webhooks/{}/post/requestBody/content/application~1json/schema", event.name());
        let mut schema =
            doc.pointer(&pointer).unwrap_or_else(|| panic!("no schema at {pointer}")).clone();
        // Its `$ref`s point into the document's components: carry them along.
        schema["components"] = doc["components"].clone();
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{event}: {e}"))
    };
    let validators: BTreeMap<Event, _> =
        Event::CATALOG.into_iter().chain([Event::Test]).map(|e| (e, validator(e))).collect();
    let mut checked = BTreeMap::<Event, usize>::new();
    for call in sample(7, 2000) {
        for p in &call {
            if let Err(e) = validators[&p.event].validate(&p.payload) {
                panic!("{}: {e} at {}: {}", p.event, e.instance_path(), p.payload);
            }
            *checked.entry(p.event).or_default() += 1;
        }
    }
    assert_eq!(checked.len(), Event::CATALOG.len(), "every event simulated: {checked:?}");
    for (event, validator) in &validators {
        let example: Value =
            serde_json::from_str(sipsim_core::payload::example_json(*event)).unwrap();
        assert!(validator.is_valid(&example), "{event}'s documented example");
        let example_of_another = if *event == Event::Sms { Event::Tags } else { Event::Sms };
        let other: Value =
            serde_json::from_str(sipsim_core::payload::example_json(example_of_another)).unwrap();
        assert!(
            !validator.is_valid(&other),
            "{event}'s schema takes {example_of_another}'s payload"
        );
    }
    // The shared shapes hold `event` to each event's own name.
    let mut answer: Value =
        serde_json::from_str(sipsim_core::payload::example_json(Event::IncomingCallStart)).unwrap();
    answer["event"] = "incoming_call_answer".into();
    assert!(!validators[&Event::IncomingCallStart].is_valid(&answer));
    assert!(validators[&Event::IncomingCallAnswer].is_valid(&answer));
    // Formats are checked, and fields the docs do not list are refused, as parsing refuses them.
    let mut late = answer.clone();
    late["time"] = "yesterday".into();
    assert!(!validators[&Event::IncomingCallAnswer].is_valid(&late));
    answer["extra"] = 1.into();
    assert!(!validators[&Event::IncomingCallAnswer].is_valid(&answer));
}

#[test]
fn the_mix_covers_every_event_and_both_kinds_of_chain() {
    let mut seen = BTreeSet::new();
    let (mut sequential, mut simultaneous) = (0, 0);
    let mut statuses = BTreeSet::new();
    for call in sample(2, 3000) {
        seen.extend(call.iter().map(|p| p.event));
        let starts: Vec<i64> = call
            .iter()
            .filter(|p| p.event == Event::IncomingCallStartChainMemberCall)
            .map(|p| p.at_ms)
            .collect();
        if starts.len() > 1 {
            if starts.windows(2).all(|w| w[0] == w[1]) {
                simultaneous += 1;
            } else {
                sequential += 1;
            }
        }
        for p in &call {
            if p.event == Event::IncomingCallEnd || p.event == Event::OutgoingCallEnd {
                statuses.insert((p.event, text(p, "status").to_owned()));
            }
        }
    }
    assert_eq!(seen.len(), 14, "{seen:?}");
    assert!(sequential > 100 && simultaneous > 100, "{sequential} {simultaneous}");
    for s in ["ANSWER", "MISSED", "BUSY", "NOANSWER"] {
        assert!(statuses.contains(&(Event::IncomingCallEnd, s.to_owned())), "{s}");
    }
    for s in ["ANSWER", "BUSY", "NOANSWER"] {
        assert!(statuses.contains(&(Event::OutgoingCallEnd, s.to_owned())), "{s}");
    }
}

#[test]
fn lifecycles_are_in_order_and_consistent() {
    for call in sample(3, 3000) {
        // Times never go back; a call's events share its pbx_id, caller and main number.
        assert!(call.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        let first = &call[0];
        if first.event == Event::Sms {
            assert_eq!(call.len(), 1);
            continue;
        }
        assert!(
            matches!(first.event, Event::IncomingCallStart | Event::OutgoingCallStart),
            "{:?}",
            first.event
        );
        let pbx = text(first, "pbx_id");
        assert!(pbx.starts_with("call_"));
        let call_events: Vec<&Planned> =
            call.iter().filter(|p| p.payload.get("pbx_id").is_some()).collect();
        for p in &call_events {
            assert_eq!(text(p, "pbx_id"), pbx);
            assert_eq!(text(p, "caller"), text(first, "caller"));
            assert_eq!(secs(p) * 1000, p.at_ms - p.at_ms.rem_euclid(1000));
        }
        let end_event = if first.event == Event::IncomingCallStart {
            Event::IncomingCallEnd
        } else {
            Event::OutgoingCallEnd
        };
        let ends: Vec<&&Planned> = call_events.iter().filter(|p| p.event == end_event).collect();
        assert_eq!(ends.len(), 1, "one end per call");
        let end = ends[0];
        let status = text(end, "status");
        let duration = end.payload["duration"].as_i64().unwrap();
        let answer = call
            .iter()
            .find(|p| matches!(p.event, Event::IncomingCallAnswer | Event::OutgoingCallAnswer));
        if status == "ANSWER" {
            let answer = answer.expect("an answered call has an answer event");
            assert_eq!(duration, secs(end) - secs(answer), "talk time");
            assert!(text(end, "audio_path").ends_with(&format!("{pbx}.mp3")));
        } else {
            assert!(answer.is_none());
            assert_eq!(duration, 0);
            assert!(end.payload["audio_path"].is_null());
        }

        // Every chain member that rang stops ringing, once, after it started; one answers an
        // answered call, for the talk time.
        let mut ringing: BTreeMap<&str, i64> = BTreeMap::new();
        let mut answered_by = Vec::new();
        for p in &call_events {
            let member = text(p, "receiver");
            match p.event {
                Event::IncomingCallStartChainMemberCall => {
                    assert!(ringing.insert(member, p.at_ms).is_none(), "rings twice");
                }
                Event::IncomingCallEndChainMemberCall => {
                    let started = ringing.remove(member).expect("ended before it rang");
                    assert!(started <= p.at_ms);
                    assert!(p.at_ms <= end.at_ms, "a member rings after the call ended");
                    if text(p, "status") == "ANSWER" {
                        answered_by.push(p.payload["duration"].as_i64().unwrap());
                    } else {
                        assert_eq!(p.payload["duration"], 0);
                    }
                }
                _ => {}
            }
        }
        assert!(ringing.is_empty(), "members still ringing: {ringing:?}");
        if end_event == Event::IncomingCallEnd {
            if status == "ANSWER" {
                assert_eq!(answered_by, [duration]);
            } else {
                assert!(answered_by.is_empty());
            }
        }

        // What follows a call: voicemail only after an unanswered incoming call; the AI events only
        // after an answered one, speech → summary → rating, on one call_id.
        let after: Vec<&Planned> = call.iter().filter(|p| p.at_ms > end.at_ms).collect();
        for p in &after {
            match p.event {
                Event::Voicemail => {
                    assert!(end_event == Event::IncomingCallEnd && status != "ANSWER");
                    assert!(status == "MISSED" || status == "NOANSWER");
                }
                Event::Tags | Event::Speech | Event::Summary | Event::Rating => {
                    assert_eq!(status, "ANSWER", "{:?} after a {status} call", p.event);
                }
                other => panic!("{other:?} after the call ended"),
            }
        }
        let ai: Vec<&Planned> = after
            .iter()
            .copied()
            .filter(|p| matches!(p.event, Event::Speech | Event::Summary | Event::Rating))
            .collect();
        let order: Vec<Event> = ai.iter().map(|p| p.event).collect();
        assert!(
            [
                &[][..],
                &[Event::Speech],
                &[Event::Speech, Event::Summary],
                &[Event::Speech, Event::Summary, Event::Rating]
            ]
            .contains(&order.as_slice()),
            "{order:?}"
        );
        let call_ids: BTreeSet<u64> =
            ai.iter().map(|p| p.payload["call_id"].as_u64().unwrap()).collect();
        assert!(call_ids.len() <= 1);
    }
}

#[test]
fn the_same_seed_gives_the_same_traffic() {
    let a: Vec<String> = sample(9, 50).iter().flatten().map(|p| p.payload.to_string()).collect();
    let b: Vec<String> = sample(9, 50).iter().flatten().map(|p| p.payload.to_string()).collect();
    assert_eq!(a, b);
    assert_ne!(
        a,
        sample(10, 50).iter().flatten().map(|p| p.payload.to_string()).collect::<Vec<_>>()
    );
}
