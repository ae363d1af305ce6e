//! Properties of the parsers that take untrusted input, as functions of raw bytes: each panics when
//! its property does not hold. The fuzz targets (`fuzz/`, libFuzzer through `cargo fuzz`) call them
//! on generated input, and `tests/fuzz_seeds.rs` runs them over every seed and every input a fuzzer
//! ever found a crash with (`fuzz/seeds/<target>/`), so each finding stays a regression test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::event::Event;
use crate::ingest::{MAX_BATCH, MAX_ERRORS, parse_batch};
use crate::jwt::{AccessClaims, JwtKey};
use crate::payload::Payload;
use crate::target::{TargetPolicy, WebhookUrl, forbidden_reason};
use crate::{AccountId, ClientId, ScopeSet};

/// `payload`: byte 0 picks the event, the rest is the JSON. What parses serialises to JSON that
/// parses back to the same payload, of the same event.
pub fn payload(data: &[u8]) {
    let Some((first, json)) = data.split_first() else {
        return;
    };
    // The catalog's 14 events, then `test`.
    let event = Event::CATALOG
        .get(usize::from(*first) % (Event::CATALOG.len() + 1))
        .copied()
        .unwrap_or(Event::Test);
    if let Ok(parsed) = Payload::parse(event, json) {
        assert_eq!(parsed.event(), event);
        let again = Payload::parse(event, &parsed.to_json())
            .unwrap_or_else(|e| panic!("re-serialised {event} payload does not parse: {e}"));
        assert_eq!(again, parsed, "round trip changed the payload");
    }
}

/// `ingest`: a request body. Accepted batches hold 1 to 1,000 messages whose stored bodies are valid
/// payloads of their events; refused ones say why, in at most 100 lines.
pub fn ingest(data: &[u8]) {
    match parse_batch(data) {
        Ok(messages) => {
            assert!(!messages.is_empty() && messages.len() <= MAX_BATCH);
            for m in &messages {
                assert_ne!(m.event, Event::Test, "test events are never ingested");
                let stored = Payload::parse(m.event, &m.body)
                    .unwrap_or_else(|e| panic!("a stored {} body does not parse: {e}", m.event));
                assert_eq!(stored.ordering_key(), m.ordering_key);
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS);
            assert!(errors.iter().all(|e| !e.is_empty()));
        }
    }
}

const JWT_KEY: &[u8] = b"fuzzing-key-fuzzing-key-fuzzing-key!";
const JWT_NOW: i64 = 1_736_937_000;

fn jwt_key() -> JwtKey {
    JwtKey::new(JWT_KEY)
}

/// A token the key issued, valid at `JWT_NOW`.
pub fn valid_token() -> String {
    jwt_key().issue(&AccessClaims {
        client_id: ClientId::parse("cli_01m8gnxnhhgwcznpk42t65v64v")
            .unwrap_or_else(|_| unreachable!("a valid client id")),
        account_id: AccountId::parse("acc_01m8gnxncgwyxxy9fpnd64grj4")
            .unwrap_or_else(|_| unreachable!("a valid account id")),
        scopes: ScopeSet::all(),
        issued_at: JWT_NOW - 10,
        expires_at: JWT_NOW + 7200,
    })
}

/// `jwt`: any string is refused or accepted without panicking; a valid token with any one byte
/// changed (byte 0 and 1 of the input: where, and what to XOR it with) is refused; and only the
/// issued token itself verifies.
pub fn jwt(data: &[u8]) {
    let key = jwt_key();
    let text = String::from_utf8_lossy(data);
    if key.verify(&text, JWT_NOW).is_ok() {
        assert_eq!(text, valid_token(), "a token the key did not issue verified");
    }
    if let [at, xor, ..] = data
        && *xor != 0
    {
        let mut token = valid_token().into_bytes();
        let i = usize::from(*at) % token.len();
        token[i] ^= xor;
        if let Ok(tampered) = String::from_utf8(token) {
            assert!(
                key.verify(&tampered, JWT_NOW).is_err(),
                "a token changed at byte {i} still verifies"
            );
        }
    }
}

/// `webhook_url`: what the production policy accepts is https, has a host that is not localhost
/// nor a forbidden address, carries no credentials or fragment, and is accepted again as printed.
pub fn webhook_url(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(url) = WebhookUrl::parse(&text, TargetPolicy::PublicHttpsOnly) else {
        return;
    };
    let parsed = url::Url::parse(url.as_str()).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(parsed.scheme(), "https");
    assert!(parsed.username().is_empty() && parsed.password().is_none());
    assert!(parsed.fragment().is_none());
    match parsed.host() {
        None => panic!("{url} has no host"),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            assert!(!d.is_empty() && d != "localhost" && !d.ends_with(".localhost"), "{url}");
        }
        Some(url::Host::Ipv4(a)) => assert_eq!(forbidden_reason(IpAddr::V4(a)), None, "{url}"),
        Some(url::Host::Ipv6(a)) => assert_eq!(forbidden_reason(IpAddr::V6(a)), None, "{url}"),
    }
    let again = WebhookUrl::parse(url.as_str(), TargetPolicy::PublicHttpsOnly)
        .unwrap_or_else(|e| panic!("{url} is refused when given back: {e}"));
    assert_eq!(again, url);
}

/// `address`: 4 or 16 bytes are an address. An IPv4 address is judged the same written as
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) and as IPv4-compatible (`::a.b.c.d`, deprecated but routable
/// by some stacks) when it is forbidden; the well-known private ranges are always forbidden.
pub fn address(data: &[u8]) {
    if let Ok(octets) = <[u8; 4]>::try_from(data) {
        let v4 = Ipv4Addr::from(octets);
        let verdict = forbidden_reason(IpAddr::V4(v4));
        assert_eq!(
            forbidden_reason(IpAddr::V6(v4.to_ipv6_mapped())),
            verdict,
            "{v4} and ::ffff:{v4}"
        );
        if verdict.is_some() {
            assert!(
                forbidden_reason(IpAddr::V6(v4.to_ipv6_compatible())).is_some(),
                "::{v4} is allowed while {v4} is not"
            );
        }
        let private = v4.is_private() || v4.is_loopback() || v4.is_link_local();
        if private
            || v4.is_unspecified()
            || v4.is_broadcast()
            || octets[0] == 100 && octets[1] & 0xc0 == 64
        {
            assert!(verdict.is_some(), "{v4} is allowed");
        }
    } else if let Ok(octets) = <[u8; 16]>::try_from(data) {
        let v6 = Ipv6Addr::from(octets);
        let verdict = forbidden_reason(IpAddr::V6(v6));
        if v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00 {
            assert!(verdict.is_some(), "{v6} is allowed");
        }
        if let Some(v4) = v6.to_ipv4_mapped() {
            assert_eq!(verdict, forbidden_reason(IpAddr::V4(v4)), "{v6}");
        }
    }
}
