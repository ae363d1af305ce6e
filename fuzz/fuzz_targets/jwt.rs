//! Fuzz target `jwt`: the property is `sipsim_core::checks::jwt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipsim_core::checks::jwt(data));
