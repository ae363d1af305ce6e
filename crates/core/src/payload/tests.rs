use super::examples::*;
use super::*;

fn compact(doc: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(doc).unwrap();
    serde_json::to_string(&v).unwrap()
}

fn err(event: Event, json: &str) -> PayloadError {
    Payload::parse(event, json.as_bytes()).unwrap_err()
}

#[test]
fn every_documented_example_round_trips_byte_for_byte() {
    let cases = all_examples();
    assert_eq!(cases.len(), 18);
    for (event, doc) in cases {
        let payload =
            Payload::parse(event, doc.as_bytes()).unwrap_or_else(|e| panic!("{event}: {e}"));
        assert_eq!(payload.event(), event);
        assert_eq!(
            String::from_utf8(payload.to_json()).unwrap(),
            compact(doc),
            "{event}: compact JSON in the documented key order"
        );
    }
}

#[test]
fn the_reference_signing_vector_body_is_our_serialisation() {
    let body = Payload::example(Event::IncomingCallStart).to_json();
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"event":"incoming_call_start","caller":"+33612345678","receiver":"+33198765432","time":"2025-01-15T10:30:00Z","pbx_id":"call_abc123"}"#
    );
    assert_eq!(
        crate::signing::sipsim_signature("your_signing_secret", 1_736_937_000, &body),
        "b60292fd3dd4f002abf403a8c9441fe727ca5607b4f81b6df646900d70b931d0"
    );
    let test = Payload::Test(TestEvent::at(Timestamp::parse("2025-01-15T10:30:00Z").unwrap()));
    assert_eq!(
        crate::signing::sipsim_signature("your_signing_secret", 1_736_937_000, &test.to_json()),
        "7a032801e3566ac344faa915bd29eab7ac5dd21fc4c9bb0163a489f8fe3bb6f0"
    );
}

#[test]
fn audio_path_is_null_not_absent() {
    let missed =
        Payload::parse(Event::IncomingCallEnd, INCOMING_CALL_END_MISSED.as_bytes()).unwrap();
    assert!(
        String::from_utf8(missed.to_json())
            .unwrap()
            .contains(r#""audio_path":null,"status":"MISSED""#)
    );
    let without = INCOMING_CALL_END_MISSED.replace("  \"audio_path\": null,\n", "");
    let e = err(Event::IncomingCallEnd, &without);
    assert_eq!(e.field, "audio_path");
    assert!(e.message.contains("missing field"), "{e}");
}

#[test]
fn strict_errors_name_the_field() {
    let e = err(
        Event::IncomingCallStart,
        &INCOMING_CALL_START.replace("  \"caller\": \"+33612345678\",\n", ""),
    );
    assert_eq!(e.field, "caller");

    let e = err(Event::IncomingCallEnd, &INCOMING_CALL_END.replace("285", "\"285\""));
    assert_eq!(e.field, "duration");
    assert!(e.message.contains("invalid type"), "{e}");

    let e = err(Event::IncomingCallEnd, &INCOMING_CALL_END.replace("285", "-1"));
    assert_eq!(e.field, "duration");

    let e = err(Event::Sms, &SMS_INBOUND.replace("\"direction\"", "\"extra\": 1, \"direction\""));
    assert_eq!(e.field, "extra");
    assert!(e.message.contains("unknown field"), "{e}");

    let e = err(Event::IncomingCallEnd, &INCOMING_CALL_END.replace("ANSWER", "answer"));
    assert_eq!(e.field, "status");

    // MISSED is documented for incoming calls only.
    let e = err(Event::OutgoingCallEnd, &OUTGOING_CALL_END.replace("ANSWER", "MISSED"));
    assert_eq!(e.field, "status");

    let e = err(Event::Speech, &SPEECH.replace("\"right\"", "\"center\""));
    assert_eq!(e.field, "payload[1].channel");

    let e = err(Event::Rating, &RATING.replace("\"score\": 7,\n", ""));
    assert_eq!(e.field, "criteria_scores[1].score");

    let e = err(Event::Tags, &TAGS.replace("2025-01-15T10:36:00Z", "yesterday"));
    assert_eq!(e.field, "time");
    assert!(e.message.contains("RFC 3339"), "{e}");

    // The payload's own `event` must name the event it is sent as.
    let e = err(Event::IncomingCallAnswer, INCOMING_CALL_START);
    assert_eq!(e.field, "event");

    for not_an_object in ["[]", "null", "\"x\"", "", "{", "{} {}"] {
        assert!(
            Payload::parse(Event::Summary, not_an_object.as_bytes()).is_err(),
            "{not_an_object}"
        );
    }
}

#[test]
fn ordering_keys() {
    assert_eq!(Payload::example(Event::Voicemail).ordering_key().as_deref(), Some("call_abc123"));
    assert_eq!(Payload::example(Event::Summary).ordering_key().as_deref(), Some("call_id:12345"));
    assert_eq!(Payload::example(Event::Sms).ordering_key(), None);
}
