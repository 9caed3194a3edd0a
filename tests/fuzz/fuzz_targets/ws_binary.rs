//! Fuzz target: the native protocol's binary frame parser (header, then address).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    natter::fuzzing::check_binary(data);
});
