//! Fuzz target `ingest`: the property is `sipsim_core::checks::ingest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipsim_core::checks::ingest(data));
