//! RFC 8291 message encryption for Web Push, in the RFC 8188 `aes128gcm` content coding.
//!
//! The application server makes a fresh P-256 key pair and salt for every message, agrees a
//! secret with the subscription's public key (ECDH), mixes in the subscription's 16-byte auth
//! secret (HKDF-SHA-256), and seals the message as one AES-128-GCM record. The body is the
//! RFC 8188 header (salt 16, record size u32 = 4096, idlen 65, keyid = the server's public
//! key) followed by that record: `plaintext || 0x02 || zero padding || tag`.
//!
//! HKDF is written out with ring's HMAC (extract = one HMAC, expand = one block, every output
//! here is at most 32 bytes) so that each intermediate value of RFC 8291 appendix A can be
//! tested; ring's `hkdf` keeps its PRK opaque.

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The record size written in the header: one record holds the whole message.
pub const RECORD_SIZE: u32 = 4096;
/// Salt, record size, idlen, keyid (the server's uncompressed P-256 public key).
pub const HEADER_LEN: usize = SALT_LEN + 4 + 1 + PUBLIC_KEY_LEN;
/// An uncompressed P-256 point: 0x04, x, y.
pub const PUBLIC_KEY_LEN: usize = 65;
/// The subscription's auth secret (RFC 8291 section 3.2: 16 octets).
pub const AUTH_SECRET_LEN: usize = 16;
/// The largest plaintext plus padding: a push service need not accept a body of more than
/// 4096 octets (RFC 8291 section 4), header (86), delimiter (1) and tag (16) included. That
/// also fits the one 4096-octet record.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - HEADER_LEN - 1 - TAG_LEN;

const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// RFC 8188 section 2: the last (here the only) record ends its plaintext with 0x02.
const LAST_RECORD_DELIMITER: u8 = 0x02;

/// Why a message could not be encrypted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EceError {
    #[error("the subscription's p256dh key is not an uncompressed P-256 point (65 bytes, 0x04…)")]
    PublicKey,
    #[error("the subscription's auth secret is {0} bytes, not 16")]
    AuthSecret(usize),
    #[error(
        "a push message holds at most {max} bytes of plaintext and padding, not {len} \
         (one 4096-byte record)"
    )]
    TooLarge { len: usize, max: usize },
    #[error("the cryptography failed (random source or key agreement)")]
    Crypto,
}

/// Encrypts `plaintext` for the subscription with public key `ua_public` (the `p256dh` key:
/// 65 bytes, uncompressed) and `auth_secret` (the `auth` key: 16 bytes), with `padding` zero
/// bytes after the delimiter (hides the length). Returns the request body for the push
/// service (`Content-Encoding: aes128gcm`).
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    padding: usize,
) -> Result<Vec<u8>, EceError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    rng.fill(&mut salt).map_err(|_| EceError::Crypto)?;
    encrypt_with(plaintext, ua_public, auth_secret, padding, &salt, &rng)
}

/// [`encrypt`] with the salt given and the server's key pair drawn from `key_rng`: the tests
/// pass ring's fixed "random" source to reproduce RFC 8291's example byte for byte; the one
/// production caller passes the system's.
fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    padding: usize,
    salt: &[u8; SALT_LEN],
    key_rng: &dyn SecureRandom,
) -> Result<Vec<u8>, EceError> {
    let auth_secret: &[u8; AUTH_SECRET_LEN] = auth_secret
        .try_into()
        .map_err(|_| EceError::AuthSecret(auth_secret.len()))?;
    if ua_public.len() != PUBLIC_KEY_LEN || ua_public[0] != 0x04 {
        return Err(EceError::PublicKey);
    }
    let len = plaintext.len().saturating_add(padding);
    if len > MAX_PLAINTEXT {
        return Err(EceError::TooLarge {
            len,
            max: MAX_PLAINTEXT,
        });
    }

    let as_private =
        EphemeralPrivateKey::generate(&ECDH_P256, key_rng).map_err(|_| EceError::Crypto)?;
    let as_public = as_private
        .compute_public_key()
        .map_err(|_| EceError::Crypto)?;
    let as_public = as_public.as_ref();
    // ring checks that the peer's point is on the curve: a bad key is refused here.
    let ecdh_secret = agreement::agree_ephemeral(
        as_private,
        &UnparsedPublicKey::new(&ECDH_P256, ua_public),
        |secret| secret.to_vec(),
    )
    .map_err(|_| EceError::PublicKey)?;
    let keys = derive(&ecdh_secret, auth_secret, ua_public, as_public, salt);

    let mut body = Vec::with_capacity(HEADER_LEN + len + 1 + TAG_LEN);
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_LEN as u8);
    body.extend_from_slice(as_public);
    let mut record = Vec::with_capacity(len + 1 + TAG_LEN);
    record.extend_from_slice(plaintext);
    record.push(LAST_RECORD_DELIMITER);
    record.resize(record.len() + padding, 0);
    seal(&keys, &mut record)?;
    body.extend_from_slice(&record);
    Ok(body)
}

/// The values RFC 8291 section 3.4 and RFC 8188 section 2.2-2.3 derive (the names are the
/// RFCs'); `ikm` and `prk` are kept for the tests of appendix A.
#[derive(Debug, PartialEq, Eq)]
struct Keys {
    ikm: [u8; 32],
    prk: [u8; 32],
    cek: [u8; 16],
    nonce: [u8; 12],
}

/// From the ECDH secret to the content encryption key and nonce of the one record (record
/// sequence number 0, so the nonce is used as derived).
fn derive(
    ecdh_secret: &[u8],
    auth_secret: &[u8; AUTH_SECRET_LEN],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8; SALT_LEN],
) -> Keys {
    // RFC 8291 3.4: PRK_key = HMAC(auth_secret, ecdh_secret);
    // IKM = HMAC(PRK_key, "WebPush: info" || 0x00 || ua_public || as_public || 0x01).
    let prk_key = hkdf_extract(auth_secret, ecdh_secret);
    let mut key_info = Vec::with_capacity(14 + 2 * PUBLIC_KEY_LEN);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let ikm = hkdf_expand_block(&prk_key, &key_info);
    // RFC 8188 2.2-2.3: PRK = HMAC(salt, IKM); CEK and NONCE are HKDF-Expand of it.
    let prk = hkdf_extract(salt, &ikm);
    let cek_block = hkdf_expand_block(&prk, b"Content-Encoding: aes128gcm\0");
    let nonce_block = hkdf_expand_block(&prk, b"Content-Encoding: nonce\0");
    let mut cek = [0u8; 16];
    cek.copy_from_slice(&cek_block[..16]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&nonce_block[..12]);
    Keys {
        ikm,
        prk,
        cek,
        nonce,
    }
}

/// HKDF-Extract (RFC 5869): HMAC-SHA-256 keyed with the salt.
fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> [u8; 32] {
    hmac_sha256(salt, &[ikm])
}

/// The first block of HKDF-Expand (RFC 5869): T(1) = HMAC(PRK, info || 0x01); every length
/// taken here (32, 16, 12) is a prefix of it.
fn hkdf_expand_block(prk: &[u8; 32], info: &[u8]) -> [u8; 32] {
    hmac_sha256(prk, &[info, &[0x01]])
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.sign().as_ref());
    out
}

fn seal(keys: &Keys, record: &mut Vec<u8>) -> Result<(), EceError> {
    let key = UnboundKey::new(&AES_128_GCM, &keys.cek).map_err(|_| EceError::Crypto)?;
    LessSafeKey::new(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(keys.nonce),
            Aad::empty(),
            record,
        )
        .map_err(|_| EceError::Crypto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // ring's deterministic "random" sources: deprecated ("internal API that will be
    // removed") but the one way to give `EphemeralPrivateKey` a known private key.
    #[allow(deprecated)]
    use ring::test::rand::FixedSliceRandom;

    // RFC 8291 section 5 and appendix A (the example's inputs and intermediate values).
    const PLAINTEXT: &str = "V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24";
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const AUTH_SECRET: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const ECDH_SECRET: &str = "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs";
    const IKM: &str = "S4lYMb_L0FxCeq0WhDx813KgSYqU26kOyzWUdsXYyrg";
    const PRK: &str = "09_eUZGrsvxChDCGRCdkLiDXrReGOEVeSCdCcPBSJSc";
    const CEK: &str = "oIhVW04MRdy2XN9CiKLxTg";
    const NONCE: &str = "4h_95klXJ5E_qnoN";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml\
                        mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT\
                        pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("base64url")
    }

    fn salt() -> [u8; 16] {
        b64(SALT).try_into().expect("valid in this test")
    }

    #[allow(deprecated)]
    fn fixed(private: &[u8]) -> FixedSliceRandom<'_> {
        FixedSliceRandom { bytes: private }
    }

    /// The subscriber's side, for the tests: parse the header, agree with its private key,
    /// derive, open, strip padding and delimiter.
    fn decrypt(body: &[u8], ua_private: &[u8], auth_secret: &[u8]) -> Result<Vec<u8>, String> {
        if body.len() < HEADER_LEN + TAG_LEN + 1 {
            return Err("too short".into());
        }
        let salt: [u8; 16] = body[..16].try_into().expect("valid in this test");
        let rs = u32::from_be_bytes(body[16..20].try_into().expect("valid in this test"));
        if rs != RECORD_SIZE || body[20] as usize != PUBLIC_KEY_LEN {
            return Err("header".into());
        }
        let as_public = &body[21..HEADER_LEN];
        let ua_key = EphemeralPrivateKey::generate(&ECDH_P256, &fixed(ua_private))
            .expect("valid in this test");
        let ua_public = ua_key
            .compute_public_key()
            .expect("valid in this test")
            .as_ref()
            .to_vec();
        let secret = agreement::agree_ephemeral(
            ua_key,
            &UnparsedPublicKey::new(&ECDH_P256, as_public),
            |s| s.to_vec(),
        )
        .map_err(|_| "agreement")?;
        let keys = derive(
            &secret,
            auth_secret.try_into().expect("valid in this test"),
            &ua_public,
            as_public,
            &salt,
        );
        let key =
            LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &keys.cek).expect("valid in this test"));
        let mut record = body[HEADER_LEN..].to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(keys.nonce),
                Aad::empty(),
                &mut record,
            )
            .map_err(|_| "authentication failed")?;
        let end = plain.iter().rposition(|&b| b != 0).ok_or("no delimiter")?;
        if plain[end] != LAST_RECORD_DELIMITER {
            return Err("not the last record".into());
        }
        Ok(plain[..end].to_vec())
    }

    #[test]
    fn the_rfc_8291_key_derivation_steps_reproduce_appendix_a() {
        let keys = derive(
            &b64(ECDH_SECRET),
            &b64(AUTH_SECRET).try_into().expect("valid in this test"),
            &b64(UA_PUBLIC),
            &b64(AS_PUBLIC),
            &salt(),
        );
        assert_eq!(URL_SAFE_NO_PAD.encode(keys.ikm), IKM);
        assert_eq!(URL_SAFE_NO_PAD.encode(keys.prk), PRK);
        assert_eq!(URL_SAFE_NO_PAD.encode(keys.cek), CEK);
        assert_eq!(URL_SAFE_NO_PAD.encode(keys.nonce), NONCE);
    }

    #[test]
    fn the_fixed_key_gives_the_rfc_public_key_and_ecdh_secret() {
        let key = EphemeralPrivateKey::generate(&ECDH_P256, &fixed(&b64(AS_PRIVATE)))
            .expect("valid in this test");
        assert_eq!(
            key.compute_public_key()
                .expect("valid in this test")
                .as_ref(),
            b64(AS_PUBLIC)
        );
        let secret = agreement::agree_ephemeral(
            key,
            &UnparsedPublicKey::new(&ECDH_P256, b64(UA_PUBLIC)),
            |s| s.to_vec(),
        )
        .expect("valid in this test");
        assert_eq!(URL_SAFE_NO_PAD.encode(secret), ECDH_SECRET);
    }

    #[test]
    fn encrypt_reproduces_the_rfc_8291_example_byte_for_byte() {
        let body = encrypt_with(
            &b64(PLAINTEXT),
            &b64(UA_PUBLIC),
            &b64(AUTH_SECRET),
            0,
            &salt(),
            &fixed(&b64(AS_PRIVATE)),
        )
        .expect("valid in this test");
        assert_eq!(URL_SAFE_NO_PAD.encode(&body), BODY);
    }

    #[test]
    fn the_rfc_example_decrypts_with_the_user_agent_key() {
        let plain =
            decrypt(&b64(BODY), &b64(UA_PRIVATE), &b64(AUTH_SECRET)).expect("valid in this test");
        assert_eq!(plain, b"When I grow up, I want to be a watermelon");
    }

    #[test]
    fn encrypt_round_trips_with_fresh_keys_and_padding() {
        let (ua_private, ua_public) = (b64(UA_PRIVATE), b64(UA_PUBLIC));
        let auth = b64(AUTH_SECRET);
        let first = encrypt(b"hello", &ua_public, &auth, 0).expect("valid in this test");
        let second = encrypt(b"hello", &ua_public, &auth, 0).expect("valid in this test");
        assert_ne!(
            first[..HEADER_LEN],
            second[..HEADER_LEN],
            "fresh salt and key"
        );
        assert_eq!(&first[16..21], &[0, 0, 0x10, 0, 65]);
        for padding in [0, 1, 100] {
            let body = encrypt(b"hello", &ua_public, &auth, padding).expect("valid in this test");
            assert_eq!(body.len(), HEADER_LEN + 5 + 1 + padding + TAG_LEN);
            assert_eq!(
                decrypt(&body, &ua_private, &auth).expect("valid in this test"),
                b"hello"
            );
        }
        let empty = encrypt(b"", &ua_public, &auth, 0).expect("valid in this test");
        assert_eq!(
            decrypt(&empty, &ua_private, &auth).expect("valid in this test"),
            b""
        );
        let mut tampered = encrypt(b"hello", &ua_public, &auth, 0).expect("valid in this test");
        *tampered.last_mut().expect("valid in this test") ^= 1;
        assert!(decrypt(&tampered, &ua_private, &auth).is_err());
    }

    #[test]
    fn the_largest_message_fills_the_4096_byte_body_and_one_more_byte_is_refused() {
        let (ua_public, auth) = (b64(UA_PUBLIC), b64(AUTH_SECRET));
        let max = vec![b'x'; MAX_PLAINTEXT];
        let body = encrypt(&max, &ua_public, &auth, 0).expect("valid in this test");
        assert_eq!(body.len(), 4096);
        assert_eq!(
            decrypt(&body, &b64(UA_PRIVATE), &auth).expect("valid in this test"),
            max
        );
        assert_eq!(
            encrypt(&max, &ua_public, &auth, 1),
            Err(EceError::TooLarge {
                len: MAX_PLAINTEXT + 1,
                max: MAX_PLAINTEXT
            })
        );
        assert!(matches!(
            encrypt(b"x", &ua_public, &auth, usize::MAX),
            Err(EceError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_subscription_keys_get_clear_errors() {
        let (ua_public, auth) = (b64(UA_PUBLIC), b64(AUTH_SECRET));
        assert_eq!(
            encrypt(b"x", &ua_public, &auth[..15], 0),
            Err(EceError::AuthSecret(15))
        );
        assert_eq!(
            encrypt(b"x", &ua_public[..33], &auth, 0),
            Err(EceError::PublicKey)
        );
        let mut off_curve = ua_public.clone();
        off_curve[64] ^= 1;
        assert_eq!(
            encrypt(b"x", &off_curve, &auth, 0),
            Err(EceError::PublicKey)
        );
        let mut compressed = ua_public;
        compressed[0] = 0x02;
        assert_eq!(
            encrypt(b"x", &compressed, &auth, 0),
            Err(EceError::PublicKey)
        );
    }
}
