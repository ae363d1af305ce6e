//! What the simulated calls say: tags, summaries, transcript lines, SMS texts, ratings, and the
//! shape of a call's numbers and times.

use serde_json::{Value, json};

use super::company::Rng;

pub(super) const TAGS: [&str; 8] =
    ["sales", "support", "follow-up", "vip", "billing", "new-lead", "complaint", "renewal"];

pub(super) const SUMMARIES: [&str; 4] = [
    "The caller asked about business phone plans for a 12-person team and requested a pricing proposal by email. Next step: send the proposal by Friday.",
    "The customer reported that calls to their support line drop after 30 seconds. The agent opened a ticket and scheduled a callback for tomorrow morning.",
    "The caller wanted to move their appointment to next week. The agent confirmed a new slot on Tuesday at 10:00 and sent an SMS confirmation.",
    "A prospect asked whether the CRM integration syncs call recordings. The agent explained the setup and offered a demo next week.",
];

pub(super) const LINES: [&str; 10] = [
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

pub(super) const SMS_INBOUND: [&str; 4] = [
    "Hi, I'd like to schedule a call for tomorrow at 2pm.",
    "Can you call me back about my order?",
    "Is the office open on Saturday?",
    "Thanks, the issue is fixed now.",
];

pub(super) const SMS_OUTBOUND: [&str; 3] = [
    "Your appointment is confirmed for tomorrow at 2pm. See you then!",
    "We tried to reach you; call us back at your convenience.",
    "Your ticket has been resolved. Reply to this message if anything is still wrong.",
];

pub(super) fn speech_segments(rng: &mut Rng, talk_s: u64) -> Vec<Value> {
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

pub(super) fn rating(rng: &mut Rng, call_id: u64) -> Value {
    let criteria: Vec<Value> = [
        ("Politeness", "The agent kept a friendly, professional tone."),
        ("Problem Resolution", "The request was handled and next steps were set."),
        ("Product Knowledge", "The agent answered product questions precisely."),
    ]
    .iter()
    .map(
        |(name, feedback)| json!({ "name": name, "score": rng.range(5, 10), "feedback": feedback }),
    )
    .collect();
    let overall = criteria.iter().filter_map(|c| c["score"].as_u64()).sum::<u64>() / 3;
    json!({
        "event": "rating",
        "call_id": call_id,
        "overall_score": overall,
        "criteria_scores": criteria,
        "highlights": ["Clear greeting", "Confirmed the customer's details"],
        "improvements": ["Summarise next steps before ending the call"],
    })
}

pub(super) fn pbx_id(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..12)
        .map(|_| char::from(ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize]))
        .collect();
    format!("call_{tail}")
}

/// Talk time in seconds: most calls are short, a few long.
pub(super) fn talk_time(rng: &mut Rng) -> u64 {
    (rng.exponential(150.0) as u64).clamp(8, 1800)
}
