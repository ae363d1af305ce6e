//! The documented example payload of every event (sipsim-reference.md § d, e), as the docs show them.
//! They are the golden tests of serialisation and what `--example` sends.

use crate::event::Event;

/// The documented example of `event`, as pretty JSON in the documented key order.
pub fn example_json(event: Event) -> &'static str {
    match event {
        Event::IncomingCallStart => INCOMING_CALL_START,
        Event::IncomingCallStartChainMemberCall => INCOMING_CALL_START_CHAIN_MEMBER_CALL,
        Event::IncomingCallEndChainMemberCall => INCOMING_CALL_END_CHAIN_MEMBER_CALL,
        Event::IncomingCallAnswer => INCOMING_CALL_ANSWER,
        Event::IncomingCallEnd => INCOMING_CALL_END,
        Event::OutgoingCallStart => OUTGOING_CALL_START,
        Event::OutgoingCallAnswer => OUTGOING_CALL_ANSWER,
        Event::OutgoingCallEnd => OUTGOING_CALL_END,
        Event::Voicemail => VOICEMAIL,
        Event::Tags => TAGS,
        Event::Speech => SPEECH,
        Event::Summary => SUMMARY,
        Event::Sms => SMS_INBOUND,
        Event::Rating => RATING,
        Event::Test => TEST,
    }
}

/// Every documented example, including the second variants some events show (a missed incoming call,
/// an unanswered outgoing call, an outbound SMS).
pub fn all_examples() -> Vec<(Event, &'static str)> {
    let mut all: Vec<(Event, &'static str)> =
        Event::CATALOG.iter().chain([Event::Test].iter()).map(|e| (*e, example_json(*e))).collect();
    all.extend([
        (Event::IncomingCallEnd, INCOMING_CALL_END_MISSED),
        (Event::OutgoingCallEnd, OUTGOING_CALL_END_UNANSWERED),
        (Event::Sms, SMS_OUTBOUND),
    ]);
    all
}

pub(crate) const INCOMING_CALL_START: &str = r#"{
  "event": "incoming_call_start",
  "caller": "+33612345678",
  "receiver": "+33198765432",
  "time": "2025-01-15T10:30:00Z",
  "pbx_id": "call_abc123"
}"#;

pub(crate) const INCOMING_CALL_START_CHAIN_MEMBER_CALL: &str = r#"{
  "event": "incoming_call_start_chain_member_call",
  "caller": "+33612345678",
  "receiver": "+33198765001",
  "time": "2025-01-15T10:30:02Z",
  "pbx_id": "call_abc123"
}"#;

/// Not documented (the page is missing): our shape, see docs/events.md.
pub(crate) const INCOMING_CALL_END_CHAIN_MEMBER_CALL: &str = r#"{
  "event": "incoming_call_end_chain_member_call",
  "caller": "+33612345678",
  "receiver": "+33198765001",
  "time": "2025-01-15T10:30:05Z",
  "pbx_id": "call_abc123",
  "duration": 0,
  "status": "NOANSWER"
}"#;

pub(crate) const INCOMING_CALL_ANSWER: &str = r#"{
  "event": "incoming_call_answer",
  "caller": "+33612345678",
  "receiver": "+33198765432",
  "time": "2025-01-15T10:30:05Z",
  "pbx_id": "call_abc123"
}"#;

pub(crate) const INCOMING_CALL_END: &str = r#"{
  "event": "incoming_call_end",
  "caller": "+33612345678",
  "receiver": "+33198765432",
  "time": "2025-01-15T10:35:00Z",
  "pbx_id": "call_abc123",
  "duration": 285,
  "audio_path": "https://app.sipsim.com/recordings/call_abc123.mp3",
  "status": "ANSWER"
}"#;

pub(crate) const INCOMING_CALL_END_MISSED: &str = r#"{
  "event": "incoming_call_end",
  "caller": "+33612345678",
  "receiver": "+33198765432",
  "time": "2025-01-15T10:30:30Z",
  "pbx_id": "call_abc123",
  "duration": 0,
  "audio_path": null,
  "status": "MISSED"
}"#;

pub(crate) const OUTGOING_CALL_START: &str = r#"{
  "event": "outgoing_call_start",
  "caller": "+33198765432",
  "receiver": "+33612345678",
  "time": "2025-01-15T14:00:00Z",
  "pbx_id": "call_def456"
}"#;

pub(crate) const OUTGOING_CALL_ANSWER: &str = r#"{
  "event": "outgoing_call_answer",
  "caller": "+33198765432",
  "receiver": "+33612345678",
  "time": "2025-01-15T14:00:08Z",
  "pbx_id": "call_def456"
}"#;

pub(crate) const OUTGOING_CALL_END: &str = r#"{
  "event": "outgoing_call_end",
  "caller": "+33198765432",
  "receiver": "+33612345678",
  "time": "2025-01-15T14:05:00Z",
  "pbx_id": "call_def456",
  "duration": 285,
  "audio_path": "https://app.sipsim.com/recordings/call_def456.mp3",
  "status": "ANSWER"
}"#;

pub(crate) const OUTGOING_CALL_END_UNANSWERED: &str = r#"{
  "event": "outgoing_call_end",
  "caller": "+33198765432",
  "receiver": "+33612345678",
  "time": "2025-01-15T14:00:30Z",
  "pbx_id": "call_def456",
  "duration": 0,
  "audio_path": null,
  "status": "NOANSWER"
}"#;

pub(crate) const VOICEMAIL: &str = r#"{
  "event": "voicemail",
  "caller": "+33612345678",
  "receiver": "+33198765432",
  "time": "2025-01-15T10:31:00Z",
  "pbx_id": "call_abc123",
  "duration": 15,
  "audio_path": "https://app.sipsim.com/recordings/vm_abc123.mp3"
}"#;

pub(crate) const TAGS: &str = r#"{
  "event": "tags",
  "caller": "+33612345678",
  "receiver": "+33198765432",
  "time": "2025-01-15T10:36:00Z",
  "pbx_id": "call_abc123",
  "tags": ["sales", "follow-up", "vip"]
}"#;

pub(crate) const SPEECH: &str = r#"{
  "call_id": 12345,
  "speech_state": "speech_stored",
  "payload": [
    {
      "text": "Hello, I'd like to inquire about your services.",
      "start": 0.5,
      "end": 3.2,
      "start_sec": 0.5,
      "channel": "left"
    },
    {
      "text": "Of course! How can I help you today?",
      "start": 3.5,
      "end": 5.8,
      "start_sec": 3.5,
      "channel": "right"
    },
    {
      "text": "I'm looking for a business phone solution.",
      "start": 6.0,
      "end": 8.5,
      "start_sec": 6.0,
      "channel": "left"
    }
  ]
}"#;

pub(crate) const SUMMARY: &str = r#"{
  "id": 789,
  "summary": "The caller inquired about business phone plans for their 15-person team. The agent explained the Pro plan with unlimited calls and CRM integration. The caller requested a follow-up email with pricing details. Next step: send pricing proposal by Friday.",
  "call_id": 12345
}"#;

pub(crate) const SMS_INBOUND: &str = r#"{
  "event": "sms",
  "caller": "+33612345678",
  "receiver": "+33198765432",
  "message": "Hi, I'd like to schedule a call for tomorrow at 2pm.",
  "time": "2025-01-15T11:00:00Z",
  "direction": "inbound"
}"#;

pub(crate) const SMS_OUTBOUND: &str = r#"{
  "event": "sms",
  "caller": "+33198765432",
  "receiver": "+33612345678",
  "message": "Your appointment is confirmed for tomorrow at 2pm. See you then!",
  "time": "2025-01-15T11:05:00Z",
  "direction": "outbound"
}"#;

pub(crate) const RATING: &str = r#"{
  "event": "rating",
  "call_id": 12345,
  "overall_score": 8,
  "criteria_scores": [
    {
      "name": "Politeness",
      "score": 9,
      "feedback": "The agent maintained a friendly and professional tone throughout the call."
    },
    {
      "name": "Problem Resolution",
      "score": 7,
      "feedback": "The issue was addressed but a follow-up action was left unconfirmed."
    },
    {
      "name": "Product Knowledge",
      "score": 8,
      "feedback": "The agent demonstrated strong knowledge of the product features."
    }
  ],
  "highlights": [
    "Excellent greeting and rapport building",
    "Clear explanation of pricing options",
    "Proactive suggestion of relevant add-on services"
  ],
  "improvements": [
    "Confirm next steps before ending the call",
    "Ask if the customer has any additional questions"
  ]
}"#;

pub(crate) const TEST: &str = r#"{
  "event": "test",
  "message": "This is a test webhook from SIPSIM. If you receive this, your endpoint is configured correctly.",
  "timestamp": "2025-01-15T10:30:00Z",
  "pbx_id": "test_000000"
}"#;
