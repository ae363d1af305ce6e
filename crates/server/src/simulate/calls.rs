//! Realistic telephony, as events: one company's incoming calls through a dial chain, outgoing calls,
//! what follows a call (tags, transcription, summary, rating, voicemail), and SMS.
//!
//! A lifecycle is a list of events with their times, generated at once from a seeded generator, in
//! the order a PBX would emit them. Times are simulated milliseconds; the driver decides when each
//! event is really sent.

use serde_json::{Value, json};
use sipsim_core::clock::rfc3339_seconds_from_ms;
use sipsim_core::event::Event;

pub use super::company::{Company, Rng};
use super::content::{
    SMS_INBOUND, SMS_OUTBOUND, SUMMARIES, TAGS, pbx_id, rating, speech_segments, talk_time,
};

/// One event of a lifecycle, at a simulated time.
#[derive(Debug, Clone)]
pub struct Planned {
    pub at_ms: i64,
    pub event: Event,
    pub payload: Value,
}

/// Identifiers that must not repeat within a run.
#[derive(Debug)]
pub struct Ids {
    next_call_id: u64,
    next_summary_id: u64,
}

impl Ids {
    pub fn starting_at(base: u64) -> Ids {
        Ids { next_call_id: base, next_summary_id: base }
    }

    fn call_id(&mut self) -> u64 {
        self.next_call_id += 1;
        self.next_call_id
    }

    fn summary_id(&mut self) -> u64 {
        self.next_summary_id += 1;
        self.next_summary_id
    }
}

/// How long a dial-chain member rings before the PBX moves on.
const RING_TIMEOUT_S: i64 = 15;

/// Builds the events of one call (or SMS), appending them in emission order.
struct Timeline<'a> {
    start_ms: i64,
    events: Vec<Planned>,
    caller: String,
    receiver: String,
    pbx_id: String,
    rng: &'a mut Rng,
}

impl Timeline<'_> {
    fn time(&self, at_s: f64) -> (i64, String) {
        let ms = self.start_ms + (at_s * 1000.0) as i64;
        (ms, rfc3339_seconds_from_ms(ms))
    }

    fn push(&mut self, at_s: f64, event: Event, payload: Value) {
        let (at_ms, _) = self.time(at_s);
        self.events.push(Planned { at_ms, event, payload });
    }

    /// An event of the call's shared shape, to `receiver`, plus `extra` fields.
    fn call_event(&mut self, at_s: f64, event: Event, receiver: &str, extra: Value) {
        let (_, time) = self.time(at_s);
        let mut payload = json!({
            "event": event.name(),
            "caller": self.caller,
            "receiver": receiver,
            "time": time,
            "pbx_id": self.pbx_id,
        });
        if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        self.push(at_s, event, payload);
    }

    fn call_end(&mut self, at_s: f64, event: Event, status: &str, talk_s: u64) {
        let audio = (status == "ANSWER")
            .then(|| format!("https://app.sipsim.com/recordings/{}.mp3", self.pbx_id));
        let receiver = self.receiver.clone();
        self.call_event(
            at_s,
            event,
            &receiver,
            json!({ "duration": talk_s, "audio_path": audio, "status": status }),
        );
    }

    fn member_start(&mut self, at_s: f64, member: &str) {
        self.call_event(at_s, Event::IncomingCallStartChainMemberCall, member, json!({}));
    }

    fn member_end(&mut self, at_s: f64, member: &str, status: &str, talk_s: u64) {
        self.call_event(
            at_s,
            Event::IncomingCallEndChainMemberCall,
            member,
            json!({ "duration": talk_s, "status": status }),
        );
    }

    fn voicemail(&mut self, at_s: f64) {
        let length = self.rng.range(4, 60);
        let audio = format!(
            "https://app.sipsim.com/recordings/vm_{}.mp3",
            self.pbx_id.trim_start_matches("call_")
        );
        let receiver = self.receiver.clone();
        self.call_event(
            at_s,
            Event::Voicemail,
            &receiver,
            json!({ "duration": length, "audio_path": audio }),
        );
    }

    /// Tags, transcription, summary and rating after an answered call that ended at `end_s`.
    fn after_call(&mut self, end_s: f64, talk_s: u64, ids: &mut Ids) {
        if self.rng.chance(0.35) {
            let count = self.rng.range(1, 3) as usize;
            let mut tags: Vec<&str> = Vec::new();
            while tags.len() < count {
                let tag = *self.rng.pick(&TAGS);
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            let at = end_s + self.rng.range(5, 60) as f64;
            let receiver = self.receiver.clone();
            self.call_event(at, Event::Tags, &receiver, json!({ "tags": tags }));
        }
        if !self.rng.chance(0.8) {
            return;
        }
        let call_id = ids.call_id();
        let mut at = end_s + self.rng.range(20, 90) as f64;
        let segments = speech_segments(self.rng, talk_s);
        self.push(
            at,
            Event::Speech,
            json!({ "call_id": call_id, "speech_state": "speech_stored", "payload": segments }),
        );
        if !self.rng.chance(0.75) {
            return;
        }
        at += self.rng.range(5, 20) as f64;
        let summary = self.rng.pick(&SUMMARIES).to_string();
        self.push(
            at,
            Event::Summary,
            json!({ "id": ids.summary_id(), "summary": summary, "call_id": call_id }),
        );
        if !self.rng.chance(0.6) {
            return;
        }
        at += self.rng.range(2, 10) as f64;
        let rating = rating(self.rng, call_id);
        self.push(at, Event::Rating, rating);
    }
}

/// The next interaction of `company`, starting at `start_ms`: an incoming call (55 %), an outgoing
/// call (30 %) or an SMS (15 %).
pub fn lifecycle(rng: &mut Rng, company: &Company, ids: &mut Ids, start_ms: i64) -> Vec<Planned> {
    let roll = rng.unit();
    let mut events = if roll < 0.55 {
        incoming(rng, company, ids, start_ms)
    } else if roll < 0.85 {
        outgoing(rng, company, ids, start_ms)
    } else {
        sms(rng, company, start_ms)
    };
    // Events built at equal times keep their order.
    events.sort_by_key(|p| p.at_ms);
    events
}

fn incoming(rng: &mut Rng, company: &Company, ids: &mut Ids, start_ms: i64) -> Vec<Planned> {
    let caller = company.outsider(rng);
    let id = pbx_id(rng);
    let mut chain = company.members.clone();
    // Rotate so that a different member is first now and then.
    let first = (rng.next_u64() % chain.len() as u64) as usize;
    chain.rotate_left(first);
    let simultaneous = rng.chance(0.4);
    let mut t = Timeline {
        start_ms,
        events: Vec::new(),
        caller,
        receiver: company.main_number.clone(),
        pbx_id: id,
        rng,
    };
    t.call_event(0.0, Event::IncomingCallStart, &company.main_number, json!({}));
    let outcome = t.rng.unit();
    // When each member starts ringing.
    let ring_at = |i: usize| {
        if simultaneous { 1.0 } else { 1.0 + (i as i64 * RING_TIMEOUT_S) as f64 }
    };
    if outcome < 0.65 {
        // Answered by one member after a few seconds of ringing.
        let k = if simultaneous {
            (t.rng.next_u64() % chain.len() as u64) as usize
        } else {
            (t.rng.next_u64() % chain.len().min(3) as u64) as usize
        };
        let answer_at = ring_at(k) + t.rng.range(2, 12) as f64;
        let talk = talk_time(t.rng);
        let end_at = answer_at + talk as f64;
        let rung = if simultaneous { chain.len() } else { k + 1 };
        let main = company.main_number.clone();
        t.call_event(answer_at, Event::IncomingCallAnswer, &main, json!({}));
        for (i, member) in chain.iter().take(rung).enumerate() {
            t.member_start(ring_at(i), member);
            if i == k {
                continue;
            }
            if simultaneous {
                t.member_end(answer_at, member, "MISSED", 0);
            } else {
                t.member_end(ring_at(i) + RING_TIMEOUT_S as f64, member, "NOANSWER", 0);
            }
        }
        t.member_end(end_at, &chain[k], "ANSWER", talk);
        t.call_end(end_at, Event::IncomingCallEnd, "ANSWER", talk);
        t.after_call(end_at, talk, ids);
    } else if outcome < 0.80 {
        // The caller hangs up while it rings; half of them leave a voicemail.
        let hangup = 3.0 + t.rng.range(2, 40) as f64;
        for (i, member) in chain.iter().enumerate() {
            let starts = ring_at(i);
            if starts >= hangup {
                break;
            }
            t.member_start(starts, member);
            let timeout = starts + RING_TIMEOUT_S as f64;
            if timeout < hangup {
                t.member_end(timeout, member, "NOANSWER", 0);
            } else {
                t.member_end(hangup, member, "MISSED", 0);
            }
        }
        t.call_end(hangup, Event::IncomingCallEnd, "MISSED", 0);
        if t.rng.chance(0.5) {
            let at = hangup + t.rng.range(20, 60) as f64;
            t.voicemail(at);
        }
    } else if outcome < 0.88 {
        // Every member is busy.
        for (i, member) in chain.iter().enumerate() {
            let at = if simultaneous { 1.0 } else { 1.0 + i as f64 };
            t.member_start(at, member);
            t.member_end(at, member, "BUSY", 0);
        }
        let last = if simultaneous { 2.0 } else { chain.len() as f64 + 1.0 };
        t.call_end(last, Event::IncomingCallEnd, "BUSY", 0);
    } else {
        // Nobody answers; the caller is offered voicemail.
        let mut last = 0.0;
        for (i, member) in chain.iter().enumerate() {
            let timeout = if simultaneous {
                1.0 + 2.0 * RING_TIMEOUT_S as f64
            } else {
                ring_at(i) + RING_TIMEOUT_S as f64
            };
            t.member_start(ring_at(i), member);
            t.member_end(timeout, member, "NOANSWER", 0);
            last = timeout;
        }
        t.call_end(last, Event::IncomingCallEnd, "NOANSWER", 0);
        if t.rng.chance(0.5) {
            let at = last + t.rng.range(20, 60) as f64;
            t.voicemail(at);
        }
    }
    t.events
}

fn outgoing(rng: &mut Rng, company: &Company, ids: &mut Ids, start_ms: i64) -> Vec<Planned> {
    let callee = company.outsider(rng);
    let id = pbx_id(rng);
    let mut t = Timeline {
        start_ms,
        events: Vec::new(),
        caller: company.main_number.clone(),
        receiver: callee.clone(),
        pbx_id: id,
        rng,
    };
    t.call_event(0.0, Event::OutgoingCallStart, &callee, json!({}));
    let outcome = t.rng.unit();
    if outcome < 0.7 {
        let answer_at = t.rng.range(3, 20) as f64;
        let talk = talk_time(t.rng);
        let end_at = answer_at + talk as f64;
        t.call_event(answer_at, Event::OutgoingCallAnswer, &callee, json!({}));
        t.call_end(end_at, Event::OutgoingCallEnd, "ANSWER", talk);
        t.after_call(end_at, talk, ids);
    } else if outcome < 0.8 {
        let at = t.rng.range(2, 5) as f64;
        t.call_end(at, Event::OutgoingCallEnd, "BUSY", 0);
    } else {
        t.call_end(30.0, Event::OutgoingCallEnd, "NOANSWER", 0);
    }
    t.events
}

fn sms(rng: &mut Rng, company: &Company, start_ms: i64) -> Vec<Planned> {
    let other = company.outsider(rng);
    let inbound = rng.chance(0.6);
    let (caller, receiver, message, direction) = if inbound {
        (other, company.main_number.clone(), *rng.pick(&SMS_INBOUND), "inbound")
    } else {
        (company.main_number.clone(), other, *rng.pick(&SMS_OUTBOUND), "outbound")
    };
    vec![Planned {
        at_ms: start_ms,
        event: Event::Sms,
        payload: json!({
            "event": "sms",
            "caller": caller,
            "receiver": receiver,
            "message": message,
            "time": rfc3339_seconds_from_ms(start_ms),
            "direction": direction,
        }),
    }]
}

#[cfg(test)]
mod tests;
