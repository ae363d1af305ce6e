//! Realistic telephony, as events: one company's incoming calls through a dial chain, outgoing calls,
//! what follows a call (tags, transcription, summary, rating, voicemail), and SMS.
//!
//! A lifecycle is a list of events with their times, generated at once from a seeded generator, in
//! the order a PBX would emit them. Times are simulated milliseconds; the driver decides when each
//! event is really sent.

use serde_json::{Value, json};
use sipsim_core::clock::rfc3339_seconds_from_ms;
use sipsim_core::event::Event;

/// A small, fast, seedable generator (SplitMix64): the simulator needs repeatable variety, not
/// secrecy.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// Exponentially distributed with this mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.next_u64() % 10) as u8))
            .collect()
    }
}

/// Where a company and its callers are.
#[derive(Debug, Clone, Copy)]
enum Country {
    France,
    UnitedKingdom,
    Germany,
    UnitedStates,
}

impl Country {
    const ALL: [Country; 4] = [
        Country::France,
        Country::UnitedKingdom,
        Country::Germany,
        Country::UnitedStates,
    ];

    /// A geographic (office) number: the area code and a subscriber part, full length.
    fn landline(self, rng: &mut Rng) -> String {
        match self {
            Country::France => format!("+33{}{}", rng.range(1, 5), rng.digits(8)),
            Country::UnitedKingdom => format!("+4420{}", rng.digits(8)),
            Country::Germany => format!("+4930{}", rng.digits(8)),
            Country::UnitedStates => format!(
                "+1{}{}{}{}",
                rng.range(2, 9),
                rng.digits(2),
                rng.range(2, 9),
                rng.digits(6)
            ),
        }
    }

    /// A mobile number.
    fn mobile(self, rng: &mut Rng) -> String {
        match self {
            Country::France => format!("+33{}{}", rng.range(6, 7), rng.digits(8)),
            Country::UnitedKingdom => format!("+447{}", rng.digits(9)),
            Country::Germany => format!("+4915{}{}", rng.range(1, 9), rng.digits(7)),
            Country::UnitedStates => Country::UnitedStates.landline(rng),
        }
    }
}

/// One simulated company (account): its main number and its dial chain's members' direct lines.
#[derive(Debug, Clone)]
pub struct Company {
    country: Country,
    pub main_number: String,
    pub members: Vec<String>,
}

impl Company {
    pub fn generate(rng: &mut Rng) -> Company {
        let country = *rng.pick(&Country::ALL);
        let main_number = country.landline(rng);
        // Direct lines share the main number's prefix, as a PBX's DID block does.
        let prefix = &main_number[..main_number.len() - 3];
        let first = rng.range(1, 900);
        let members = (0..rng.range(2, 5))
            .map(|i| format!("{prefix}{:03}", first + i))
            .collect();
        Company {
            country,
            main_number,
            members,
        }
    }

    /// Someone outside the company: mostly a mobile of the same country, sometimes abroad.
    fn outsider(&self, rng: &mut Rng) -> String {
        let country = if rng.chance(0.85) {
            self.country
        } else {
            *rng.pick(&Country::ALL)
        };
        if rng.chance(0.7) {
            country.mobile(rng)
        } else {
            country.landline(rng)
        }
    }
}

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
        Ids {
            next_call_id: base,
            next_summary_id: base,
        }
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
        self.events.push(Planned {
            at_ms,
            event,
            payload,
        });
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
        self.call_event(
            at_s,
            Event::IncomingCallStartChainMemberCall,
            member,
            json!({}),
        );
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

const TAGS: [&str; 8] = [
    "sales",
    "support",
    "follow-up",
    "vip",
    "billing",
    "new-lead",
    "complaint",
    "renewal",
];

const SUMMARIES: [&str; 4] = [
    "The caller asked about business phone plans for a 12-person team and requested a pricing proposal by email. Next step: send the proposal by Friday.",
    "The customer reported that calls to their support line drop after 30 seconds. The agent opened a ticket and scheduled a callback for tomorrow morning.",
    "The caller wanted to move their appointment to next week. The agent confirmed a new slot on Tuesday at 10:00 and sent an SMS confirmation.",
    "A prospect asked whether the CRM integration syncs call recordings. The agent explained the setup and offered a demo next week.",
];

const LINES: [&str; 10] = [
    "Hello, thanks for calling, how can I help you?",
    "Hi, I'm calling about my last invoice.",
    "Of course, could you give me your account number?",
    "Sure, it's on the email you sent me last week.",
    "Thank you, I can see it now.",
    "The amount looks higher than usual.",
    "That's the new add-on you activated this month.",
    "Ah, I see. Can I switch it off from the dashboard?",
    "Yes, under Integrations; I'll send you the link.",
    "Perfect, thank you for your help.",
];

const SMS_INBOUND: [&str; 4] = [
    "Hi, I'd like to schedule a call for tomorrow at 2pm.",
    "Can you call me back about my order?",
    "Is the office open on Saturday?",
    "Thanks, the issue is fixed now.",
];

const SMS_OUTBOUND: [&str; 3] = [
    "Your appointment is confirmed for tomorrow at 2pm. See you then!",
    "We tried to reach you; call us back at your convenience.",
    "Your ticket has been resolved. Reply to this message if anything is still wrong.",
];

fn speech_segments(rng: &mut Rng, talk_s: u64) -> Vec<Value> {
    let count = (talk_s / 15).clamp(2, 10) as usize;
    let slot = talk_s as f64 / count as f64;
    (0..count)
        .map(|i| {
            let start = ((i as f64 * slot + rng.unit() * slot * 0.2) * 10.0).round() / 10.0;
            let end = ((start + slot * 0.7) * 10.0).round() / 10.0;
            let channel = if i % 2 == 0 { "right" } else { "left" };
            json!({
                "text": LINES[i % LINES.len()],
                "start": start,
                "end": end,
                "start_sec": start,
                "channel": channel,
            })
        })
        .collect()
}

fn rating(rng: &mut Rng, call_id: u64) -> Value {
    let criteria: Vec<Value> = [
        (
            "Politeness",
            "The agent kept a friendly, professional tone.",
        ),
        (
            "Problem Resolution",
            "The request was handled and next steps were set.",
        ),
        (
            "Product Knowledge",
            "The agent answered product questions precisely.",
        ),
    ]
    .iter()
    .map(
        |(name, feedback)| json!({ "name": name, "score": rng.range(5, 10), "feedback": feedback }),
    )
    .collect();
    let overall = criteria
        .iter()
        .filter_map(|c| c["score"].as_u64())
        .sum::<u64>()
        / 3;
    json!({
        "event": "rating",
        "call_id": call_id,
        "overall_score": overall,
        "criteria_scores": criteria,
        "highlights": ["Clear greeting", "Confirmed the customer's details"],
        "improvements": ["Summarise next steps before ending the call"],
    })
}

fn pbx_id(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..12)
        .map(|_| char::from(ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize]))
        .collect();
    format!("call_{tail}")
}

/// Talk time in seconds: most calls are short, a few long.
fn talk_time(rng: &mut Rng) -> u64 {
    (rng.exponential(150.0) as u64).clamp(8, 1800)
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
    t.call_event(
        0.0,
        Event::IncomingCallStart,
        &company.main_number,
        json!({}),
    );
    let outcome = t.rng.unit();
    // When each member starts ringing.
    let ring_at = |i: usize| {
        if simultaneous {
            1.0
        } else {
            1.0 + (i as i64 * RING_TIMEOUT_S) as f64
        }
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
        let last = if simultaneous {
            2.0
        } else {
            chain.len() as f64 + 1.0
        };
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
        (
            other,
            company.main_number.clone(),
            *rng.pick(&SMS_INBOUND),
            "inbound",
        )
    } else {
        (
            company.main_number.clone(),
            other,
            *rng.pick(&SMS_OUTBOUND),
            "outbound",
        )
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
