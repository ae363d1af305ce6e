//! Fuzz target `payload`: the property is `sipsim_core::checks::payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipsim_core::checks::payload(data));
