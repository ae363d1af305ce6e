//! Micro-benchmarks of the per-delivery and per-request work, each beside a baseline in the same
//! group: `cargo bench -p sipsim-bench --bench micro`. `sipsim-bench` reads their medians from
//! `target/criterion/<group>/{ours,baseline}/new/estimates.json`.
//!
//! - `sign/ours`: both signature headers of one delivery (`X-Webhook-Signature` and
//!   `webhook-signature`); `sign/baseline`: one bare HMAC-SHA256 of the same body.
//! - `payload/ours`: validating a payload against its event's schema and serialising our canonical
//!   form; `payload/baseline`: `serde_json` to an untyped `Value` and back.
//! - `jwt/ours`: verifying an access token (signature, header, claims, expiry);
//!   `jwt/baseline`: one bare HMAC-SHA256 of the token's signed part.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{KeyInit, Mac};
use sipsim_core::jwt::{AccessClaims, JwtKey};
use sipsim_core::payload::Payload;
use sipsim_core::secret::SigningSecret;
use sipsim_core::{AccountId, ClientId, Event, ScopeSet};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sign(c: &mut Criterion) {
    let secret = SigningSecret::generate();
    let body = Payload::example(Event::IncomingCallEnd).to_json();
    let mut group = c.benchmark_group("sign");
    group.bench_function("ours", |b| {
        b.iter(|| {
            let s = sipsim_core::signing::sipsim_signature(secret.expose(), 1_700_000_000, &body);
            let w = sipsim_core::signing::standard_signature(
                &[secret.expose()],
                "msg_01hzzzzzzzzzzzzzzzzzzzzzzz",
                1_700_000_000,
                &body,
            );
            black_box((s, w))
        })
    });
    group.bench_function("baseline", |b| {
        b.iter(|| black_box(hmac(secret.expose().as_bytes(), black_box(&body))))
    });
    group.finish();
}

fn payload(c: &mut Criterion) {
    let json = sipsim_core::payload::example_json(Event::IncomingCallEnd).as_bytes();
    let mut group = c.benchmark_group("payload");
    group.bench_function("ours", |b| {
        b.iter(|| {
            let parsed = Payload::parse(Event::IncomingCallEnd, black_box(json));
            black_box(parsed.map(|p| p.to_json()))
        })
    });
    group.bench_function("baseline", |b| {
        b.iter(|| {
            let value: Result<serde_json::Value, _> = serde_json::from_slice(black_box(json));
            black_box(value.map(|v| serde_json::to_vec(&v)))
        })
    });
    group.finish();
}

fn jwt(c: &mut Criterion) {
    let key = JwtKey::new(b"a-benchmark-secret-of-thirty-two-bytes");
    let now = 1_700_000_000;
    let token = key.issue(&AccessClaims {
        client_id: ClientId::generate(),
        account_id: AccountId::generate(),
        scopes: ScopeSet::all(),
        issued_at: now,
        expires_at: now + 3600,
    });
    let signed = token.rsplit_once('.').map(|(s, _)| s.to_owned()).unwrap_or_default();
    let mut group = c.benchmark_group("jwt");
    group.bench_function("ours", |b| b.iter(|| black_box(key.verify(black_box(&token), now + 10))));
    group.bench_function("baseline", |b| {
        b.iter(|| {
            black_box(hmac(b"a-benchmark-secret-of-thirty-two-bytes", black_box(signed.as_bytes())))
        })
    });
    group.finish();
}

criterion_group!(benches, sign, payload, jwt);
criterion_main!(benches);
