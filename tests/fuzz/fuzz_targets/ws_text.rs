//! Fuzz target: every dialect's text-frame decoder on one input (natter::fuzzing::check_text
//! asserts the documented outcome shapes).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 by the time a decoder sees them (tungstenite checks, else 1007).
    if let Ok(text) = std::str::from_utf8(data) {
        natter::fuzzing::check_text(text);
    }
});
