//! Fuzz target `webhook_url`: the property is `sipsim_core::checks::webhook_url`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipsim_core::checks::webhook_url(data));
