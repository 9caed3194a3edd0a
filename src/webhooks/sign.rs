//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, "Signature scheme"):
//! `webhook-signature: v1,<base64 of HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, the
//! secret shared with the receiver as `whsec_<base64>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// What a shared secret is written as.
pub const SECRET_PREFIX: &str = "whsec_";
/// The specification's bounds on a secret: "between 24 bytes and 64 bytes".
pub const MIN_SECRET_LEN: usize = 24;
pub const MAX_SECRET_LEN: usize = 64;
/// The length of a generated secret: 32 random bytes, as the specification suggests.
const GENERATED_SECRET_LEN: usize = 32;

/// Why a secret was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a webhook secret is whsec_ followed by standard base64")]
    Format,
    #[error("a webhook secret is 24 to 64 bytes, not {0}")]
    Length(usize),
    #[error("the random source failed")]
    Random,
}

/// An endpoint's signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    /// Never the bytes: a secret does not reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh secret from the system's random source.
    pub fn generate() -> Result<Secret, SecretError> {
        let mut bytes = vec![0u8; GENERATED_SECRET_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretError::Random)?;
        Ok(Secret(bytes))
    }

    /// Parses `whsec_<base64>` (the prefix is required: a bare base64 string is ambiguous with
    /// other secrets an admin might paste).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Format)?;
        // Bounded before decoding: 64 bytes are 88 base64 characters.
        if encoded.len() > 4 * MAX_SECRET_LEN.div_ceil(3) {
            return Err(SecretError::Length(encoded.len() / 4 * 3));
        }
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError::Format)?;
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(Secret(bytes))
    }

    /// The `whsec_<base64>` form, shown to the admin once and given to the receiver.
    pub fn encoded(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The `webhook-signature` header value for message `msg_id` (the `webhook-id` header), sent
/// at `timestamp` (seconds since the epoch, the `webhook-timestamp` header), with `body` as
/// the exact bytes of the request body.
pub fn sign(secret: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut context = hmac::Context::with_key(&key);
    context.update(msg_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "sign function works" test of the specification's reference libraries
    /// (standard-webhooks/standard-webhooks, libraries/javascript/src/webhook.test.ts).
    #[test]
    fn the_reference_example_signs_to_the_published_signature() {
        let secret =
            Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid in this test");
        assert_eq!(secret.bytes().len(), 24);
        assert_eq!(
            sign(
                secret.bytes(),
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn every_signed_part_matters() {
        let secret = Secret::generate().expect("valid in this test");
        let base = sign(secret.bytes(), "msg_1", 100, b"{}");
        assert_ne!(base, sign(secret.bytes(), "msg_2", 100, b"{}"));
        assert_ne!(base, sign(secret.bytes(), "msg_1", 101, b"{}"));
        assert_ne!(base, sign(secret.bytes(), "msg_1", 100, b"{} "));
        assert_ne!(
            base,
            sign(
                Secret::generate().expect("valid in this test").bytes(),
                "msg_1",
                100,
                b"{}"
            )
        );
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let secret = Secret::generate().expect("valid in this test");
        assert_eq!(secret.bytes().len(), 32);
        let text = secret.encoded();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text).expect("valid in this test"), secret);
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Format)
        );
        assert_eq!(Secret::parse("whsec_not base64!"), Err(SecretError::Format));
        assert_eq!(
            Secret::parse(&format!("whsec_{}", STANDARD.encode([0u8; 23]))),
            Err(SecretError::Length(23))
        );
        assert_eq!(
            Secret::parse(&format!("whsec_{}", STANDARD.encode([0u8; 65]))),
            Err(SecretError::Length(65))
        );
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([0u8; 64]))).is_ok());
        assert!(matches!(
            Secret::parse(&format!("whsec_{}", "A".repeat(100_000))),
            Err(SecretError::Length(_))
        ));
    }
}
