//! Fuzz target `address`: the property is `sipsim_core::checks::address`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipsim_core::checks::address(data));
