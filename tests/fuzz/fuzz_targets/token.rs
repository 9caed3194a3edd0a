//! Fuzz target: the token extractor of the WebSocket upgrade (headers and query string) and the
//! access/refresh token verifier. The input is split on 0x00 bytes: pairs of header name and
//! value, then the query string; the whole input, as text, is also handed to the verifier.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    let query = if parts.len() % 2 == 1 {
        parts.pop().and_then(|q| std::str::from_utf8(q).ok())
    } else {
        None
    };
    let headers: Vec<(&[u8], &[u8])> = parts.chunks(2).map(|pair| (pair[0], pair[1])).collect();
    natter::fuzzing::check_token_sources(&headers, query);
    if let Ok(text) = std::str::from_utf8(data) {
        natter::fuzzing::check_token(text);
    }
});
