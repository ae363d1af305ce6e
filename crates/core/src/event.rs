//! The event catalog: every event SIPSIM sends, in the contract's order, and sets of subscribed events.
//!
//! The catalog order is the order of `GET /api/v2/webhooks/available`, and every list of subscribed
//! events is returned in it. Subscriptions are stored as a bit set ([`EventSet`]); each subscribable
//! event owns a fixed bit ([`Event::bit`]) that is part of the stored format and must never be renumbered.

use std::fmt;

/// One event type of SIPSIM's webhook system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// An incoming call starts ringing.
    IncomingCallStart,
    /// A dial-chain member starts ringing.
    IncomingCallStartChainMemberCall,
    /// A dial-chain member's call ends.
    IncomingCallEndChainMemberCall,
    /// An incoming call is answered.
    IncomingCallAnswer,
    /// An incoming call ends.
    IncomingCallEnd,
    /// An outgoing call is placed.
    OutgoingCallStart,
    /// An outgoing call is answered.
    OutgoingCallAnswer,
    /// An outgoing call ends.
    OutgoingCallEnd,
    /// A voicemail was left.
    Voicemail,
    /// Tags on a call changed.
    Tags,
    /// A transcription is ready.
    Speech,
    /// An AI summary is ready.
    Summary,
    /// An SMS was received or sent.
    Sms,
    /// An AI quality rating is ready.
    Rating,
    /// The dashboard's *Send Test* event. Never subscribable.
    Test,
}

/// How SIPSIM's docs group the events (dashboard sections).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventGroup {
    /// "Incoming Calls".
    IncomingCalls,
    /// "Outgoing Calls".
    OutgoingCalls,
    /// "Additional Events".
    Additional,
}

impl Event {
    /// The subscribable events, in the contract's catalog order (14 of them; `test` is not one).
    pub const CATALOG: [Event; 14] = [
        Event::IncomingCallStart,
        Event::IncomingCallStartChainMemberCall,
        Event::IncomingCallEndChainMemberCall,
        Event::IncomingCallAnswer,
        Event::IncomingCallEnd,
        Event::OutgoingCallStart,
        Event::OutgoingCallAnswer,
        Event::OutgoingCallEnd,
        Event::Voicemail,
        Event::Tags,
        Event::Speech,
        Event::Summary,
        Event::Sms,
        Event::Rating,
    ];

    /// The wire name, as in payloads and paths.
    pub const fn name(self) -> &'static str {
        match self {
            Event::IncomingCallStart => "incoming_call_start",
            Event::IncomingCallStartChainMemberCall => "incoming_call_start_chain_member_call",
            Event::IncomingCallEndChainMemberCall => "incoming_call_end_chain_member_call",
            Event::IncomingCallAnswer => "incoming_call_answer",
            Event::IncomingCallEnd => "incoming_call_end",
            Event::OutgoingCallStart => "outgoing_call_start",
            Event::OutgoingCallAnswer => "outgoing_call_answer",
            Event::OutgoingCallEnd => "outgoing_call_end",
            Event::Voicemail => "voicemail",
            Event::Tags => "tags",
            Event::Speech => "speech",
            Event::Summary => "summary",
            Event::Sms => "sms",
            Event::Rating => "rating",
            Event::Test => "test",
        }
    }

    /// SIPSIM's one-line description of the event.
    pub const fn description(self) -> &'static str {
        match self {
            Event::IncomingCallStart => "Triggered when an incoming call is initiated",
            Event::IncomingCallStartChainMemberCall => {
                "Triggered when a dial chain member starts ringing"
            }
            Event::IncomingCallEndChainMemberCall => "Triggered when a dial chain member call ends",
            Event::IncomingCallAnswer => "Triggered when an incoming call is answered",
            Event::IncomingCallEnd => "Triggered when an incoming call ends",
            Event::OutgoingCallStart => "Triggered when an outgoing call is initiated",
            Event::OutgoingCallAnswer => "Triggered when an outgoing call is answered",
            Event::OutgoingCallEnd => "Triggered when an outgoing call ends",
            Event::Voicemail => "Triggered when a voicemail is left",
            Event::Tags => "Triggered when tags are added or updated on a call",
            Event::Speech => "Triggered when speech transcription is completed",
            Event::Summary => "Triggered when a call summary is generated",
            Event::Sms => "Triggered when an SMS is received or sent",
            Event::Rating => "Triggered when a call quality rating is generated",
            Event::Test => "Manually triggered from the dashboard to verify your endpoint",
        }
    }

    /// The dashboard group the event belongs to.
    pub const fn group(self) -> EventGroup {
        match self {
            Event::IncomingCallStart
            | Event::IncomingCallStartChainMemberCall
            | Event::IncomingCallEndChainMemberCall
            | Event::IncomingCallAnswer
            | Event::IncomingCallEnd => EventGroup::IncomingCalls,
            Event::OutgoingCallStart | Event::OutgoingCallAnswer | Event::OutgoingCallEnd => {
                EventGroup::OutgoingCalls
            }
            _ => EventGroup::Additional,
        }
    }

    /// The event's bit in a stored [`EventSet`], or `None` for `test`, which cannot be subscribed to.
    /// Part of the storage format: never renumber.
    pub const fn bit(self) -> Option<u32> {
        match self {
            Event::Test => None,
            // The catalog's first 14 variants take bits 0..=13 in declaration order.
            other => Some(other as u32),
        }
    }

    /// Parses a wire name, including `test`. Exact and case-sensitive.
    pub fn from_name(name: &str) -> Option<Event> {
        Event::CATALOG
            .iter()
            .copied()
            .chain(std::iter::once(Event::Test))
            .find(|e| e.name() == name)
    }

    /// Parses the name of an event that can be subscribed to (`test` is refused).
    pub fn subscribable(name: &str) -> Option<Event> {
        Event::from_name(name).filter(|e| e.bit().is_some())
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of subscribable events, stored as a bit mask and always listed in catalog order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventSet(u32);

impl EventSet {
    /// Every subscribable event.
    pub const ALL: EventSet = EventSet((1 << Event::CATALOG.len()) - 1);

    /// The empty set.
    pub const fn empty() -> Self {
        EventSet(0)
    }

    /// Builds a set from its stored bits, dropping bits that name no event.
    pub const fn from_bits_truncate(bits: i64) -> Self {
        EventSet((bits as u32) & EventSet::ALL.0)
    }

    /// The stored form.
    pub const fn bits(self) -> i64 {
        self.0 as i64
    }

    /// The mask for one event (`0` for `test`).
    pub const fn of(event: Event) -> Self {
        match event.bit() {
            Some(b) => EventSet(1 << b),
            None => EventSet(0),
        }
    }

    /// Whether `event` is in the set.
    pub const fn contains(self, event: Event) -> bool {
        match event.bit() {
            Some(b) => self.0 & (1 << b) != 0,
            None => false,
        }
    }

    /// This set with `event` added.
    pub const fn with(self, event: Event) -> Self {
        EventSet(self.0 | EventSet::of(event).0)
    }

    /// This set with `event` removed.
    pub const fn without(self, event: Event) -> Self {
        EventSet(self.0 & !EventSet::of(event).0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The events in catalog order.
    pub fn iter(self) -> impl Iterator<Item = Event> {
        Event::CATALOG.into_iter().filter(move |e| self.contains(*e))
    }

    /// The events' names in catalog order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Event::name).collect()
    }

    /// Parses a list separated by commas and/or whitespace (`--events a,b c`). An empty list is the
    /// empty set; the first name that is not a subscribable event is returned as the error.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        list.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).try_fold(
            EventSet::empty(),
            |set, name| {
                Event::subscribable(name).map(|e| set.with(e)).ok_or_else(|| name.to_owned())
            },
        )
    }
}

impl FromIterator<Event> for EventSet {
    fn from_iter<I: IntoIterator<Item = Event>>(iter: I) -> Self {
        iter.into_iter().fold(EventSet::empty(), EventSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The catalog's order is the contract's: server/tests/it/contract.rs compares the list the
    // API serves (this catalog, in order) with the contract's, name by name.

    #[test]
    fn bits_are_fixed_and_distinct() {
        for (i, e) in Event::CATALOG.iter().enumerate() {
            assert_eq!(e.bit(), Some(i as u32), "{e}");
        }
        assert_eq!(Event::Test.bit(), None);
        assert_eq!(EventSet::ALL.iter().count(), 14);
    }

    #[test]
    fn parsing_is_exact() {
        assert_eq!(Event::from_name("sms"), Some(Event::Sms));
        assert_eq!(Event::from_name("test"), Some(Event::Test));
        assert_eq!(Event::subscribable("test"), None);
        assert_eq!(Event::from_name("SMS"), None);
        assert_eq!(Event::from_name(" sms"), None);
        assert_eq!(Event::from_name(""), None);
    }

    #[test]
    fn sets_list_in_catalog_order() {
        let set: EventSet =
            [Event::OutgoingCallEnd, Event::IncomingCallStart, Event::Rating].into_iter().collect();
        assert_eq!(set.names(), ["incoming_call_start", "outgoing_call_end", "rating"]);
        assert_eq!(set.without(Event::Rating).with(Event::Test), {
            let s: EventSet =
                [Event::OutgoingCallEnd, Event::IncomingCallStart].into_iter().collect();
            s
        });
        assert_eq!(EventSet::from_bits_truncate(set.bits() | 1 << 30), set);
    }

    #[test]
    fn parse_list_accepts_commas_and_spaces() {
        let set = EventSet::parse_list("sms, rating tags").unwrap();
        assert_eq!(set.names(), ["tags", "sms", "rating"]);
        assert_eq!(EventSet::parse_list("").unwrap(), EventSet::empty());
        assert_eq!(EventSet::parse_list("sms,test"), Err("test".to_owned()));
    }
}
