//! Decoder checks for the property tests below and the coverage-guided fuzz targets in
//! `tests/fuzz`: each runs decoders of untrusted input exactly as a connection does, without a
//! connection, and asserts what every outcome must look like (so a decoder that panics, or
//! answers in a shape the protocol does not document, fails the test or stops the fuzzer).
//! Hidden from the docs: it is a test harness, not an API.

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::error::Error;
use crate::ws::dialect::{edusphere, fastchat, kibray, native, rooms};

/// The documented beginnings of a native envelope error (man page, ERRORS: 400).
const NATIVE_ENVELOPE_ERRORS: &[&str] = &[
    "malformed JSON: ",
    "a message must be a JSON object with a \"type\"",
    "\"id\" must be a string of at most 128 bytes",
    "\"type\" must be 1 to 64 bytes",
    "\"type\" must be a string",
    "missing field \"type\"",
    "\"timestamp\" must be a number",
];

/// A text frame's JSON; panics unless the frame is text holding JSON.
fn frame_json(frame: &Message) -> Value {
    match frame {
        Message::Text(text) => serde_json::from_str(text.as_str()).expect("frames are JSON"),
        other => panic!("a text frame was expected, got {other:?}"),
    }
}

/// Every text decoder on one text frame: the native envelope (also what `/ws` looks at to tell
/// FastChat), FastChat, EduSphere, Kibray and the rooms dialect.
pub fn check_text(text: &str) {
    check_native(text);
    check_fastchat(text);
    check_edusphere(text);
    check_kibray(text);
    check_rooms(text);
}

fn check_native(text: &str) {
    match native::Envelope::parse(text) {
        Ok(request) => {
            assert!(
                !request.kind.is_empty() && request.kind.len() <= 64,
                "type of {} bytes accepted",
                request.kind.len()
            );
            if let Some(id) = &request.id {
                // A string id is at most 128 bytes; a number id is its decimal form.
                assert!(id.len() <= 128 || id.parse::<f64>().is_ok(), "id {id:?}");
            }
        }
        Err((error, id)) => {
            assert!(matches!(error, Error::BadRequest(_)), "{error:?}");
            let message = error.public_message();
            assert!(
                NATIVE_ENVELOPE_ERRORS
                    .iter()
                    .any(|p| message.starts_with(p)),
                "undocumented envelope error {message:?}"
            );
            let frame = frame_json(&native::error_frame(&error, id.as_deref(), None));
            assert_eq!(frame["type"], "Error");
            assert_eq!(frame["data"]["code"], 400);
            assert_eq!(frame["data"]["message"], message.as_str());
        }
    }
}

fn check_fastchat(text: &str) {
    let hello = fastchat::is_hello(text);
    match fastchat::Envelope::parse(text) {
        Ok(request) => {
            assert!(request.data.is_object(), "data is always an object");
            assert_eq!(hello, request.kind == fastchat::HELLO, "{text:?}");
        }
        Err(error) => {
            // A HELLO whose data is not an object still switches `/ws` to FastChat, which
            // then answers this VALIDATION error.
            let frame = frame_json(&fastchat::error_frame(&error));
            assert_eq!(frame["type"], "ERROR");
            assert_eq!(frame["data"]["code"], "VALIDATION");
            assert!(
                frame["data"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
    }
}

fn check_edusphere(text: &str) {
    match edusphere::parse(text) {
        Ok((kind, map)) => {
            assert_eq!(map.get("type").and_then(Value::as_str), Some(kind.as_str()));
            // The message id of an update or delete, against two rooms.
            for room_id in [1, u64::MAX] {
                match edusphere::message_seq(&map, room_id) {
                    Ok(seq) => {
                        let id = map["messageId"].as_str().expect("a string id");
                        let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
                        assert_eq!(crate::ws::dialect::message_from_uuid(&uuid), (room_id, seq));
                    }
                    Err(message) => assert!(
                        message == "Message not found."
                            || message == "Field \"messageId\" must be a string.",
                        "{message:?}"
                    ),
                }
            }
        }
        Err(message) => assert!(
            message == "Invalid JSON."
                || message == "A message must be a JSON object with a \"type\".",
            "{message:?}"
        ),
    }
}

fn check_kibray(text: &str) {
    match kibray::parse(text) {
        Ok((kind, map)) => {
            assert_eq!(map.get("type").and_then(Value::as_str), Some(kind.as_str()));
        }
        Err(message) => assert!(
            message.starts_with("malformed JSON: ")
                || message == "a message must be a JSON object with a string \"type\"",
            "{message:?}"
        ),
    }
}

fn check_rooms(text: &str) {
    match rooms::parse(text) {
        Ok((kind, value)) => {
            assert_eq!(value["type"].as_str(), Some(kind.as_str()));
            if let Some(room) = value.get("room").and_then(Value::as_str) {
                check_room_identifier(room);
            }
        }
        Err(message) => {
            assert!(
                message.starts_with("malformed JSON: ")
                    || message == "a message must be a JSON object with a string \"type\"",
                "{message:?}"
            );
            let frame = frame_json(&rooms::error_event(&message, None));
            assert_eq!(frame["type"], "error");
        }
    }
}

/// A rooms-dialect identifier parses exactly when it is `channel|project|task|user:<digits>`.
pub fn check_room_identifier(identifier: &str) {
    let well_formed = identifier.split_once(':').is_some_and(|(prefix, id)| {
        ["channel", "project", "task", "user"].contains(&prefix)
            && (1..=20).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_digit())
            && (prefix != "user" || id.parse::<u64>().is_ok())
    });
    match rooms::parse_target(identifier) {
        Ok(_) => assert!(well_formed, "{identifier:?} accepted"),
        Err(message) => {
            assert!(!well_formed, "{identifier:?} refused: {message}");
            assert!(message.starts_with("invalid room "), "{message:?}");
        }
    }
}

/// The native binary frame decoder: a header is accepted exactly when it is at least 5 bytes,
/// names a defined type (0x01 to 0x04, or 0x81 to 0x84 with an address) and declares the
/// payload's real length; an address exactly when its length byte is followed by that many
/// bytes of non-empty UTF-8.
pub fn check_binary(frame: &[u8]) {
    let frame = Bytes::copy_from_slice(frame);
    let defined = |byte: u8| (1..=4).contains(&(byte & 0x7f));
    match native::binary_header(&frame) {
        Ok(header) => {
            assert!(defined(frame[0]));
            assert_eq!(header.addressed, frame[0] & 0x80 != 0);
            let payload = header.payload;
            assert_eq!(payload.len() + 5, frame.len());
            let declared = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
            assert_eq!(usize::try_from(declared).ok(), Some(payload.len()));
            match native::binary_address(&payload) {
                Ok((address, data)) => {
                    assert!(!address.is_empty());
                    assert_eq!(usize::from(payload[0]), address.len());
                    assert_eq!(1 + address.len() + data.len(), payload.len());
                }
                Err(error) => assert!(matches!(error, Error::BadRequest(_)), "{error:?}"),
            }
        }
        Err(error) => {
            assert!(matches!(error, Error::BadRequest(_)), "{error:?}");
            let well_formed = frame.len() >= 5
                && defined(frame[0])
                && u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]])
                    == u32::try_from(frame.len() - 5).unwrap_or(u32::MAX);
            assert!(!well_formed, "a well-formed header refused: {error}");
        }
    }
}

/// The token extractor of the WebSocket upgrade, on arbitrary headers and query string: it
/// never returns an empty token, and a token it returns comes from one of the four sources.
pub fn check_token_sources(headers: &[(&[u8], &[u8])], query: Option<&str>) {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    let found = crate::ws::credentials(&map, query);
    if let Some(token) = &found.token {
        assert!(!token.is_empty(), "an empty token was extracted");
    }
    if let Some(protocol) = &found.subprotocol {
        assert!(protocol.starts_with(crate::ws::TOKEN_SUBPROTOCOL_PREFIX));
        assert!(protocol.len() > crate::ws::TOKEN_SUBPROTOCOL_PREFIX.len());
    }
    if let Some(query) = query {
        let _ = crate::wire::query_param(query, "token");
        let _ = crate::wire::percent_decode(query);
    }
}

/// The access- and refresh-token verifier, on an arbitrary string: refused as an invalid token
/// (whose message is a fixed text: `InvalidToken` holds a `&'static str`, so it can never
/// repeat the token), unless it is a token that the same keys signed.
pub fn check_token(token: &str) {
    let config = crate::config::AuthConfig::default();
    let keys = crate::auth::TokenKeys::new(&config, b"fuzzing secret of at least 32 bytes!");
    for outcome in [
        keys.decode_access(token).map(|_| ()),
        keys.decode_refresh(token).map(|_| ()),
    ] {
        if let Err(error) = outcome {
            assert!(matches!(error, Error::InvalidToken(_)), "{error:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    /// Any JSON value: huge and negative numbers, floats, unicode strings, nesting.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,24}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Field names the decoders look at, so generated objects reach past the first check.
    const KNOWN_FIELDS: &[&str] = &[
        "type",
        "data",
        "id",
        "timestamp",
        "metadata",
        "messageId",
        "message",
        "room",
        "user_id",
        "display_name",
        "content",
    ];

    /// Frame types of every dialect (and near misses).
    const KNOWN_TYPES: &[&str] = &[
        "Ping",
        "Send",
        "Join",
        "HELLO",
        "MSG",
        "hello",
        "chat_message",
        "join_room",
        "ping",
        "update",
        "delete",
        "text",
        "",
    ];

    /// An object shaped like a frame: known and arbitrary keys, known and arbitrary values.
    fn envelope() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            prop::sample::select(KNOWN_FIELDS).prop_map(str::to_owned),
            ".{0,8}",
        ];
        let value = prop_oneof![
            prop::sample::select(KNOWN_TYPES).prop_map(|t| json!(t)),
            "(channel|project|task|user):[0-9]{0,22}".prop_map(Value::String),
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(Value::String),
            json_value(),
        ];
        prop::collection::vec((key, value), 0..8).prop_map(|pairs| {
            let mut map = Map::new();
            for (key, value) in pairs {
                map.insert(key, value);
            }
            Value::Object(map)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn text_decoders_take_any_string(text in ".{0,200}") {
            check_text(&text);
        }

        #[test]
        fn text_decoders_take_any_json(value in json_value()) {
            check_text(&value.to_string());
        }

        #[test]
        fn text_decoders_take_frame_shaped_objects(value in envelope()) {
            check_text(&value.to_string());
        }

        #[test]
        fn text_decoders_take_mangled_json(value in envelope(), cut in any::<prop::sample::Index>()) {
            let text = value.to_string();
            let mut end = cut.index(text.len() + 1);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            check_text(&text[..end]);
        }

        #[test]
        fn binary_decoder_takes_any_bytes(frame in prop::collection::vec(any::<u8>(), 0..64)) {
            check_binary(&frame);
        }

        #[test]
        fn binary_decoder_takes_frames_with_honest_headers(
            kind in 0u8..8,
            address_len in any::<u8>(),
            body in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut payload = vec![address_len];
            payload.extend_from_slice(&body);
            let length = u32::try_from(payload.len()).expect("small");
            let mut frame = vec![kind];
            frame.extend_from_slice(&length.to_be_bytes());
            frame.extend_from_slice(&payload);
            check_binary(&frame);
        }

        #[test]
        fn room_identifiers_follow_their_grammar(
            identifier in prop_oneof![
                "(channel|project|task|user|chan|):[0-9]{0,24}",
                "(channel|user):[0-9a-z+-]{0,6}",
                ".{0,30}",
            ]
        ) {
            check_room_identifier(&identifier);
        }

        #[test]
        fn token_extractor_takes_any_headers_and_query(
            headers in prop::collection::vec(
                (
                    prop_oneof![
                        Just("authorization"), Just("cookie"), Just("sec-websocket-protocol"),
                        Just("x-other"),
                    ],
                    prop_oneof![
                        "(Bearer|bearer|Basic|) ?[ -~]{0,20}",
                        "(natter_access|sessionid|other)=[ -~]{0,12}(; [a-z_]+=[ -~]{0,8}){0,2}",
                        "(access_token\\.)?[ -~]{0,16}(, ?access_token\\.[ -~]{0,8})?",
                        prop::collection::vec(any::<u8>(), 0..16)
                            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                    ],
                ),
                0..5,
            ),
            query in prop::option::of("(token=)?[ -~%+]{0,30}(&token=[ -~%]{0,8})?"),
        ) {
            let headers: Vec<(&[u8], &[u8])> = headers
                .iter()
                .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
                .collect();
            check_token_sources(&headers, query.as_deref());
        }

        #[test]
        fn percent_decoding_inverts_percent_encoding(text in ".{0,40}") {
            let encoded: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
            prop_assert_eq!(crate::wire::percent_decode(&encoded), text);
        }

        #[test]
        fn token_verifier_takes_any_string(token in prop_oneof![
            ".{0,120}",
            "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,43}",
        ]) {
            check_token(&token);
        }
    }

    /// serde_json stops at 128 levels: deeper nesting is a parse error, not a stack overflow.
    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        for depth in [127, 128, 129, 10_000, 100_000] {
            check_text(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            let nested = format!("{}1{}", "{\"type\":".repeat(depth), "}".repeat(depth));
            check_text(&nested);
        }
    }

    /// Numbers no integer type holds, as ids, timestamps and sequence numbers.
    #[test]
    fn huge_numbers_are_decoded_or_refused() {
        for number in [
            "1e400",
            "-1e400",
            "18446744073709551616",
            "-0",
            "1.5e308",
            "123456789012345678901234567890",
        ] {
            check_text(&format!(
                r#"{{"type":"Ping","id":{number},"timestamp":{number},"data":{{"timestamp":{number}}}}}"#
            ));
            check_text(&format!(
                r#"{{"type":"update","messageId":{number},"message":"x"}}"#
            ));
        }
    }

    /// A well-signed token still verifies, so the check above is not refusing everything.
    #[test]
    fn a_signed_token_verifies() {
        let config = crate::config::AuthConfig::default();
        let keys = crate::auth::TokenKeys::new(&config, b"fuzzing secret of at least 32 bytes!");
        let token = keys
            .issue_refresh(
                uuid::Uuid::new_v4(),
                uuid::Uuid::new_v4(),
                1,
                crate::store::now_secs() + 60,
            )
            .expect("signs");
        assert!(keys.decode_refresh(&token).is_ok());
        check_token(&token);
        let mut tampered = token.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert!(keys.decode_refresh(&tampered).is_err());
    }
}
