//! Typed payloads of every event, as SIPSIM documents them.
//!
//! Each payload serialises to compact JSON with the documented field names, types and key order
//! (serde writes fields in declaration order), `audio_path: null` when there is no recording, and
//! uppercase call statuses. Parsing is strict: a missing field, a field of the wrong type, a field the
//! docs do not list, an `event` field that names another event, a malformed timestamp or a status the
//! docs do not list is an error naming the field.
//!
//! `incoming_call_end_chain_member_call` has no published page; its shape is our decision
//! (`docs/events.md`): `event, caller, receiver, time, pbx_id, duration, status`, statuses as for
//! `incoming_call_end`.

mod examples;
pub mod schema;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::event::Event;

pub use examples::{all_examples, example_json};

/// An ISO 8601 / RFC 3339 timestamp string (`2025-01-15T10:30:00Z`), kept exactly as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = DateTime, example = "2025-01-15T10:30:00Z")]
pub struct Timestamp(String);

impl Timestamp {
    /// Checks `s` is an RFC 3339 date-time.
    pub fn parse(s: &str) -> Result<Self, String> {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(|_| Timestamp(s.to_owned()))
            .map_err(|_| format!("'{s}' is not an RFC 3339 timestamp such as 2025-01-15T10:30:00Z"))
    }

    /// The timestamp text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How an incoming call (or a dial-chain member's call) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum IncomingEndStatus {
    /// Answered and completed normally.
    Answer,
    /// Not answered.
    Missed,
    /// The receiver was busy.
    Busy,
    /// No answer within the timeout.
    Noanswer,
}

/// How an outgoing call ended (`MISSED` is not listed for outgoing calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum OutgoingEndStatus {
    /// Answered and completed normally.
    Answer,
    /// The remote party was busy.
    Busy,
    /// No answer within the timeout.
    Noanswer,
}

/// `incoming_call_start`, `incoming_call_start_chain_member_call`, `incoming_call_answer`,
/// `outgoing_call_start`, `outgoing_call_answer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallPoint {
    /// The event name.
    pub event: String,
    /// Caller's number.
    pub caller: String,
    /// Receiver's number (the chain member's for chain events).
    pub receiver: String,
    /// When it happened.
    pub time: Timestamp,
    /// The call's id in the PBX.
    pub pbx_id: String,
}

/// `incoming_call_end` and `outgoing_call_end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallEnd<S> {
    /// The event name.
    pub event: String,
    /// Caller's number.
    pub caller: String,
    /// Receiver's number.
    pub receiver: String,
    /// When it ended.
    pub time: Timestamp,
    /// The call's id in the PBX.
    pub pbx_id: String,
    /// Seconds (0 if not answered).
    pub duration: u64,
    /// Recording URL, `null` when there is none. The key is always present: without this
    /// `deserialize_with`, serde would quietly read a missing key as `null`.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    pub audio_path: Option<String>,
    /// How it ended.
    pub status: S,
}

/// `incoming_call_end_chain_member_call` (shape decided by us: the docs' page is missing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainMemberEnd {
    /// The event name.
    pub event: String,
    /// Caller's number.
    pub caller: String,
    /// The chain member's number or extension.
    pub receiver: String,
    /// When the member's leg ended.
    pub time: Timestamp,
    /// The call's id in the PBX.
    pub pbx_id: String,
    /// Seconds the member's leg lasted.
    pub duration: u64,
    /// How the member's leg ended.
    pub status: IncomingEndStatus,
}

/// `voicemail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Voicemail {
    /// The event name.
    pub event: String,
    /// Who left it.
    pub caller: String,
    /// The number it was left on.
    pub receiver: String,
    /// When.
    pub time: Timestamp,
    /// The missed call's id in the PBX.
    pub pbx_id: String,
    /// Seconds.
    pub duration: u64,
    /// Recording URL.
    pub audio_path: String,
}

/// `tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tags {
    /// The event name.
    pub event: String,
    /// Caller's number.
    pub caller: String,
    /// Receiver's number.
    pub receiver: String,
    /// When.
    pub time: Timestamp,
    /// The call's id in the PBX.
    pub pbx_id: String,
    /// The full current list of tag names on the call.
    pub tags: Vec<String>,
}

/// Which side of the call a transcription segment is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The caller (external party).
    Left,
    /// The receiver (team member).
    Right,
}

/// One transcription segment of `speech`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeechSegment {
    /// Transcribed text.
    pub text: String,
    /// Start offset.
    pub start: f64,
    /// End offset.
    pub end: f64,
    /// Start in seconds from the beginning of the call.
    pub start_sec: f64,
    /// `left` (caller) or `right` (receiver).
    pub channel: Channel,
}

/// `speech` (no `event` and no `pbx_id` field, as documented).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Speech {
    /// Internal call id.
    pub call_id: u64,
    /// Transcription state, e.g. `speech_stored`.
    pub speech_state: String,
    /// Segments.
    pub payload: Vec<SpeechSegment>,
}

/// `summary` (no `event` and no `pbx_id` field, as documented).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Summary record id.
    pub id: u64,
    /// The summary text.
    pub summary: String,
    /// Internal call id.
    pub call_id: u64,
}

/// Direction of an SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received.
    Inbound,
    /// Sent.
    Outbound,
}

/// `sms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    /// The event name.
    pub event: String,
    /// Sender's number.
    pub caller: String,
    /// Recipient's number.
    pub receiver: String,
    /// The text.
    pub message: String,
    /// When.
    pub time: Timestamp,
    /// `inbound` or `outbound`.
    pub direction: Direction,
}

/// One criterion of a `rating`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CriterionScore {
    /// Criterion name.
    pub name: String,
    /// Its score.
    pub score: i64,
    /// Feedback on it.
    pub feedback: String,
}

/// `rating`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rating {
    /// The event name.
    pub event: String,
    /// Internal call id.
    pub call_id: u64,
    /// Overall score.
    pub overall_score: i64,
    /// Per-criterion scores.
    pub criteria_scores: Vec<CriterionScore>,
    /// What went well.
    pub highlights: Vec<String>,
    /// What to improve.
    pub improvements: Vec<String>,
}

/// `test`: sent only by *Send Test*.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// Always `test`.
    pub event: String,
    /// A human-readable confirmation.
    pub message: String,
    /// When the test was sent.
    pub timestamp: Timestamp,
    /// Always `test_000000`.
    pub pbx_id: String,
}

impl TestEvent {
    /// The documented confirmation message.
    pub const MESSAGE: &'static str = "This is a test webhook from SIPSIM. If you receive this, your endpoint is configured correctly.";

    /// The test payload sent at `timestamp`.
    pub fn at(timestamp: Timestamp) -> Self {
        TestEvent {
            event: "test".to_owned(),
            message: Self::MESSAGE.to_owned(),
            timestamp,
            pbx_id: "test_000000".to_owned(),
        }
    }
}

/// A payload of any event.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// One of the five "point in a call" events; the [`Event`] says which.
    Call(Event, CallPoint),
    /// `incoming_call_end`.
    IncomingCallEnd(CallEnd<IncomingEndStatus>),
    /// `outgoing_call_end`.
    OutgoingCallEnd(CallEnd<OutgoingEndStatus>),
    /// `incoming_call_end_chain_member_call`.
    ChainMemberEnd(ChainMemberEnd),
    /// `voicemail`.
    Voicemail(Voicemail),
    /// `tags`.
    Tags(Tags),
    /// `speech`.
    Speech(Speech),
    /// `summary`.
    Summary(Summary),
    /// `sms`.
    Sms(Sms),
    /// `rating`.
    Rating(Rating),
    /// `test`.
    Test(TestEvent),
}

/// Why a payload was refused: the field (a JSON path such as `payload[1].channel`, or `.` for the
/// payload as a whole) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PayloadError {
    /// Where.
    pub field: String,
    /// What.
    pub message: String,
}

fn strict<T: DeserializeOwned>(json: &[u8]) -> Result<T, PayloadError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let field = match missing_field(&message) {
            Some(name) if path == "." => name,
            Some(name) => format!("{path}.{name}"),
            None => path,
        };
        PayloadError { field, message: clean_message(&message) }
    })?;
    de.end().map_err(|e| PayloadError {
        field: ".".to_owned(),
        message: clean_message(&e.to_string()),
    })?;
    Ok(value)
}

/// serde reports a missing field at the parent's path; name the field itself.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// serde_json appends " at line L column C"; the field path says where already.
fn clean_message(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn check_event(expected: Event, actual: &str) -> Result<(), PayloadError> {
    if actual == expected.name() {
        Ok(())
    } else {
        Err(PayloadError {
            field: "event".to_owned(),
            message: format!("must be \"{}\" for this event, not \"{actual}\"", expected.name()),
        })
    }
}

/// The ordering key of the events that name a call by `call_id` (speech, summary, rating), kept
/// apart from `pbx_id` keys: the two may look alike and must not share a chain.
fn call_id_key(call_id: impl std::fmt::Display) -> String {
    format!("call_id:{call_id}")
}

/// The ordering keys a search for one call matches: `call` as a `pbx_id`, and as a `call_id`.
pub fn keys_of_call(call: &str) -> [String; 2] {
    [call.to_owned(), call_id_key(call)]
}

impl Payload {
    /// Parses and checks the payload of `event` from JSON.
    pub fn parse(event: Event, json: &[u8]) -> Result<Payload, PayloadError> {
        let payload = match event {
            Event::IncomingCallStart
            | Event::IncomingCallStartChainMemberCall
            | Event::IncomingCallAnswer
            | Event::OutgoingCallStart
            | Event::OutgoingCallAnswer => Payload::Call(event, strict(json)?),
            Event::IncomingCallEnd => Payload::IncomingCallEnd(strict(json)?),
            Event::OutgoingCallEnd => Payload::OutgoingCallEnd(strict(json)?),
            Event::IncomingCallEndChainMemberCall => Payload::ChainMemberEnd(strict(json)?),
            Event::Voicemail => Payload::Voicemail(strict(json)?),
            Event::Tags => Payload::Tags(strict(json)?),
            Event::Speech => Payload::Speech(strict(json)?),
            Event::Summary => Payload::Summary(strict(json)?),
            Event::Sms => Payload::Sms(strict(json)?),
            Event::Rating => Payload::Rating(strict(json)?),
            Event::Test => Payload::Test(strict(json)?),
        };
        if let Some(named) = payload.event_field() {
            check_event(event, named)?;
        }
        Ok(payload)
    }

    /// The documented example payload of `event`.
    pub fn example(event: Event) -> Payload {
        // The examples are constants checked by this module's tests, so parsing cannot fail.
        #[allow(clippy::expect_used)]
        Payload::parse(event, example_json(event).as_bytes()).expect("documented example parses")
    }

    /// The event this payload belongs to.
    pub fn event(&self) -> Event {
        match self {
            Payload::Call(e, _) => *e,
            Payload::IncomingCallEnd(_) => Event::IncomingCallEnd,
            Payload::OutgoingCallEnd(_) => Event::OutgoingCallEnd,
            Payload::ChainMemberEnd(_) => Event::IncomingCallEndChainMemberCall,
            Payload::Voicemail(_) => Event::Voicemail,
            Payload::Tags(_) => Event::Tags,
            Payload::Speech(_) => Event::Speech,
            Payload::Summary(_) => Event::Summary,
            Payload::Sms(_) => Event::Sms,
            Payload::Rating(_) => Event::Rating,
            Payload::Test(_) => Event::Test,
        }
    }

    /// The payload's own `event` field, for events that have one.
    fn event_field(&self) -> Option<&str> {
        match self {
            Payload::Call(_, p) => Some(&p.event),
            Payload::IncomingCallEnd(p) => Some(&p.event),
            Payload::OutgoingCallEnd(p) => Some(&p.event),
            Payload::ChainMemberEnd(p) => Some(&p.event),
            Payload::Voicemail(p) => Some(&p.event),
            Payload::Tags(p) => Some(&p.event),
            Payload::Sms(p) => Some(&p.event),
            Payload::Rating(p) => Some(&p.event),
            Payload::Test(p) => Some(&p.event),
            Payload::Speech(_) | Payload::Summary(_) => None,
        }
    }

    /// The key that orders deliveries of one call: `pbx_id` for call, voicemail and tags events,
    /// `call_id` for speech, summary and rating; `None` for sms and test.
    pub fn ordering_key(&self) -> Option<String> {
        match self {
            Payload::Call(_, p) => Some(p.pbx_id.clone()),
            Payload::IncomingCallEnd(p) => Some(p.pbx_id.clone()),
            Payload::OutgoingCallEnd(p) => Some(p.pbx_id.clone()),
            Payload::ChainMemberEnd(p) => Some(p.pbx_id.clone()),
            Payload::Voicemail(p) => Some(p.pbx_id.clone()),
            Payload::Tags(p) => Some(p.pbx_id.clone()),
            Payload::Speech(p) => Some(call_id_key(p.call_id)),
            Payload::Summary(p) => Some(call_id_key(p.call_id)),
            Payload::Rating(p) => Some(call_id_key(p.call_id)),
            Payload::Sms(_) | Payload::Test(_) => None,
        }
    }

    /// The request body: compact JSON, documented key order.
    pub fn to_json(&self) -> Vec<u8> {
        let bytes = match self {
            Payload::Call(_, p) => serde_json::to_vec(p),
            Payload::IncomingCallEnd(p) => serde_json::to_vec(p),
            Payload::OutgoingCallEnd(p) => serde_json::to_vec(p),
            Payload::ChainMemberEnd(p) => serde_json::to_vec(p),
            Payload::Voicemail(p) => serde_json::to_vec(p),
            Payload::Tags(p) => serde_json::to_vec(p),
            Payload::Speech(p) => serde_json::to_vec(p),
            Payload::Summary(p) => serde_json::to_vec(p),
            Payload::Sms(p) => serde_json::to_vec(p),
            Payload::Rating(p) => serde_json::to_vec(p),
            Payload::Test(p) => serde_json::to_vec(p),
        };
        // Every payload type is plain data (strings, integers, finite floats): serialising cannot fail.
        bytes.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
