//! RFC 8292 VAPID: the application server's P-256 key pair, its public key as browsers take
//! it (`applicationServerKey`), and the `Authorization: vapid t=<JWT>, k=<key>` header a push
//! service checks.
//!
//! The JWT is ES256 (ECDSA P-256 SHA-256, the signature as the 64-byte `r || s` JWS uses),
//! with the claims `aud` (the origin of the push endpoint), `exp` (at most 24 hours ahead,
//! RFC 8292 section 2) and `sub` (a `mailto:` or `https:` contact).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

/// RFC 8292 section 2: a push service may reject an `exp` more than 24 hours ahead.
pub const MAX_TTL_SECS: u64 = 24 * 60 * 60;
/// Endpoint URLs and subjects come from clients and config: bounded before they are parsed.
const MAX_URL_LEN: usize = 2048;
const MAX_SUBJECT_LEN: usize = 256;
/// The JWS header, always the same bytes.
const JWT_HEADER: &str = r#"{"typ":"JWT","alg":"ES256"}"#;

/// Why a key could not be made or loaded, or a header not signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VapidError {
    #[error("the VAPID key is not a PKCS#8 P-256 private key")]
    Key,
    #[error("the push endpoint is not an http(s) URL with a host: {0}")]
    Endpoint(String),
    #[error("the VAPID subject must be a mailto: or https: URL of at most 256 bytes")]
    Subject,
    #[error("the VAPID token lifetime must be 1 s to 24 h, not {0} s")]
    Ttl(u64),
    #[error("the cryptography failed (random source or signature)")]
    Crypto,
}

/// The application server's VAPID key pair. Stored as its PKCS#8 document ([`Self::pkcs8`]).
pub struct VapidKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for VapidKey {
    /// The public half only: the private key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.application_server_key())
            .finish_non_exhaustive()
    }
}

impl VapidKey {
    /// A fresh key pair from the system's random source.
    pub fn generate() -> Result<VapidKey, VapidError> {
        let rng = SystemRandom::new();
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| VapidError::Crypto)?;
        VapidKey::from_pkcs8(document.as_ref())
    }

    /// Loads a key pair stored with [`Self::pkcs8`].
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<VapidKey, VapidError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|_| VapidError::Key)?;
        Ok(VapidKey {
            pair,
            pkcs8: pkcs8.to_vec(),
            rng,
        })
    }

    /// The PKCS#8 (DER) document to store: a secret (mode 0600 where it is written).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key, an uncompressed P-256 point (65 bytes).
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key in base64url without padding: the `applicationServerKey` a browser
    /// subscribes with, and the header's `k`.
    pub fn application_server_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// The `Authorization` header value for a push to `endpoint`:
    /// `vapid t=<JWT>, k=<public key>`, valid from `now` (seconds since the epoch) for
    /// `ttl_secs` (1 s to 24 h), with `subject` (`mailto:…` or `https:…`) as the contact.
    pub fn authorization(
        &self,
        endpoint: &str,
        subject: &str,
        now: u64,
        ttl_secs: u64,
    ) -> Result<String, VapidError> {
        let audience = audience(endpoint)?;
        if subject.len() > MAX_SUBJECT_LEN
            || !(subject.starts_with("mailto:") || subject.starts_with("https:"))
            || subject.chars().any(char::is_control)
        {
            return Err(VapidError::Subject);
        }
        if ttl_secs == 0 || ttl_secs > MAX_TTL_SECS {
            return Err(VapidError::Ttl(ttl_secs));
        }
        let exp = now.checked_add(ttl_secs).ok_or(VapidError::Ttl(ttl_secs))?;
        let claims = serde_json::json!({ "aud": audience, "exp": exp, "sub": subject });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(JWT_HEADER),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| VapidError::Crypto)?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            URL_SAFE_NO_PAD.encode(signature.as_ref()),
            self.application_server_key()
        ))
    }
}

/// The origin of a push endpoint, the JWT's `aud`: `scheme://host[:port]`, scheme and host
/// lowercased, the scheme's default port left out (RFC 6454 serialization). Userinfo is
/// refused: a push endpoint never has one, and `user@host` hides which host is meant.
fn audience(endpoint: &str) -> Result<String, VapidError> {
    let bad = || VapidError::Endpoint(endpoint.chars().take(100).collect());
    if endpoint.len() > MAX_URL_LEN {
        return Err(bad());
    }
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return Err(bad()),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(bad());
    }
    // An IPv6 literal keeps its brackets; the port is what follows the last ':' after them.
    let (host, port) = match authority.rfind(':') {
        Some(at) if !authority[at..].contains(']') => {
            (&authority[..at], Some(&authority[at + 1..]))
        }
        _ => (authority, None),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => {
            !ipv6.is_empty()
                && ipv6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        }
        None => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        }
    };
    if !host_ok {
        return Err(bad());
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(port) => {
            let number: u16 = port.parse().map_err(|_| bad())?;
            if port == default_port || number.to_string() == default_port {
                Ok(format!("{scheme}://{host}"))
            } else {
                Ok(format!("{scheme}://{host}:{number}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    fn parts(header: &str) -> (String, String, String, String) {
        let rest = header.strip_prefix("vapid t=").expect("scheme");
        let (token, key) = rest.split_once(", k=").expect("k");
        let mut pieces = token.split('.');
        let (h, c, s) = (
            pieces.next().expect("valid in this test").to_string(),
            pieces.next().expect("valid in this test").to_string(),
            pieces.next().expect("valid in this test").to_string(),
        );
        assert!(pieces.next().is_none());
        (h, c, s, key.to_string())
    }

    #[test]
    fn the_header_is_an_es256_jwt_that_ring_verifies_with_the_claims_asked_for() {
        let key = VapidKey::generate().expect("valid in this test");
        let header = key
            .authorization(
                "https://Push.Example.net:443/wpush/v2/abc?x=1",
                "mailto:admin@example.org",
                1_700_000_000,
                12 * 3600,
            )
            .expect("valid in this test");
        let (h, c, s, k) = parts(&header);
        assert_eq!(k, key.application_server_key());
        let public = URL_SAFE_NO_PAD.decode(&k).expect("valid in this test");
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 0x04);
        let signature = URL_SAFE_NO_PAD.decode(&s).expect("valid in this test");
        assert_eq!(signature.len(), 64, "JWS r || s");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(format!("{h}.{c}").as_bytes(), &signature)
            .expect("signature verifies");
        // Any change to the signed part breaks it.
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
                .verify(format!("{h}.{c}x").as_bytes(), &signature)
                .is_err()
        );
        let header_json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&h).expect("valid in this test"))
                .expect("valid in this test");
        assert_eq!(
            header_json,
            serde_json::json!({"typ": "JWT", "alg": "ES256"})
        );
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&c).expect("valid in this test"))
                .expect("valid in this test");
        assert_eq!(
            claims,
            serde_json::json!({
                "aud": "https://push.example.net",
                "exp": 1_700_000_000u64 + 12 * 3600,
                "sub": "mailto:admin@example.org",
            })
        );
    }

    #[test]
    fn a_stored_key_loads_back_to_the_same_public_key_and_signs() {
        let key = VapidKey::generate().expect("valid in this test");
        let again = VapidKey::from_pkcs8(key.pkcs8()).expect("valid in this test");
        assert_eq!(again.public_key(), key.public_key());
        assert!(format!("{again:?}").contains(&key.application_server_key()));
        let header = again
            .authorization(
                "https://fcm.googleapis.com/fcm/send/x",
                "https://chat.example",
                0,
                60,
            )
            .expect("valid in this test");
        let (h, c, s, _) = parts(&header);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key())
            .verify(
                format!("{h}.{c}").as_bytes(),
                &URL_SAFE_NO_PAD.decode(s).expect("valid in this test"),
            )
            .expect("valid in this test");
        assert_eq!(
            VapidKey::from_pkcs8(b"not a key").expect_err("refused"),
            VapidError::Key
        );
        assert_ne!(
            VapidKey::generate()
                .expect("valid in this test")
                .public_key(),
            key.public_key()
        );
    }

    #[test]
    fn the_audience_is_the_endpoint_origin() {
        for (endpoint, origin) in [
            (
                "https://updates.push.services.mozilla.com/wpush/v2/gAAA",
                "https://updates.push.services.mozilla.com",
            ),
            (
                "https://push.example.net:8443/p",
                "https://push.example.net:8443",
            ),
            ("HTTPS://PUSH.example.NET", "https://push.example.net"),
            ("http://127.0.0.1:8080/push/1", "http://127.0.0.1:8080"),
            ("http://localhost:80/x", "http://localhost"),
            ("https://[::1]:9000/x", "https://[::1]:9000"),
            ("https://[::1]/x", "https://[::1]"),
            ("https://h.example?q", "https://h.example"),
        ] {
            assert_eq!(
                audience(endpoint).expect("valid in this test"),
                origin,
                "{endpoint}"
            );
        }
        for endpoint in [
            "",
            "push.example.net/x",
            "ftp://push.example.net/x",
            "https:///x",
            "https://user@push.example.net/x",
            "https://push.example.net:99999/x",
            "https://push.example.net:/x",
            "https://push example/x",
            "https://a:b:80/x",
            "https://[]/x",
            &format!("https://{}.example/", "a".repeat(3000)),
        ] {
            assert!(
                matches!(audience(endpoint), Err(VapidError::Endpoint(_))),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn subject_and_lifetime_are_checked() {
        let key = VapidKey::generate().expect("valid in this test");
        let url = "https://push.example.net/x";
        let sign = |sub: &str, ttl| key.authorization(url, sub, 1000, ttl);
        assert_eq!(sign("admin@example.org", 60), Err(VapidError::Subject));
        assert_eq!(sign("http://example.org", 60), Err(VapidError::Subject));
        assert_eq!(
            sign(&format!("mailto:{}", "a".repeat(300)), 60),
            Err(VapidError::Subject)
        );
        assert_eq!(sign("mailto:a@b\r\nX: y", 60), Err(VapidError::Subject));
        assert_eq!(sign("mailto:a@example.org", 0), Err(VapidError::Ttl(0)));
        assert_eq!(
            sign("mailto:a@example.org", MAX_TTL_SECS + 1),
            Err(VapidError::Ttl(MAX_TTL_SECS + 1))
        );
        assert!(sign("mailto:a@example.org", MAX_TTL_SECS).is_ok());
        assert_eq!(
            key.authorization(url, "mailto:a@example.org", u64::MAX, 60),
            Err(VapidError::Ttl(60))
        );
    }
}
