//! The cryptography under jsonwebtoken, on ring: the library rustls already links for `[tls]`.
//! jsonwebtoken's own backends would add a second copy of the same primitives (RustCrypto: RSA
//! with its bignum, P-256, P-384, Ed25519, SHA-2, about 0.7 MB of the stripped binary) or a C
//! library (aws-lc). natter needs only these: HS256 to sign and verify its own tokens, and
//! HS256, RS256 and EdDSA to verify an external issuer's (`[[auth.external]]`). Every other
//! algorithm is refused as not accepted, which the validation pinned per key would do anyway.
//!
//! This file also reads the issuers' public keys from PEM: an RSA key as `PUBLIC KEY`
//! (SubjectPublicKeyInfo) or `RSA PUBLIC KEY` (PKCS#1), an Ed25519 key as `PUBLIC KEY`.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::{hmac, signature};

/// ring as jsonwebtoken's provider. JWKs are not used by natter, so their helpers stay
/// jsonwebtoken's unimplemented ones.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes ring jsonwebtoken's provider for this process. Called where keys are made
/// ([`crate::auth::TokenKeys::new`], [`crate::auth::external::ExternalIssuers::load`]), so before
/// any token is signed or verified; later calls change nothing.
pub(crate) fn install() {
    // An error means a provider is installed already: this one, as natter installs no other
    // and jsonwebtoken is built without a backend of its own.
    let _ = PROVIDER.install_default();
}

/// Smallest and largest RSA modulus accepted, in bits (ring verifies 2048 to 8192).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// The DER object identifier (content bytes) of rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// The DER object identifier of Ed25519, 1.3.101.112 (RFC 8410).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const DER_INTEGER: u8 = 0x02;
const DER_BIT_STRING: u8 = 0x03;
const DER_OID: u8 = 0x06;
const DER_SEQUENCE: u8 = 0x30;

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, JwtError> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256(hmac::Key::new(
            hmac::HMAC_SHA256,
            key.try_get_hmac_secret()?,
        )))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn new_verifier(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> Result<Box<dyn JwtVerifier>, JwtError> {
    let DecodingKeyKind::SecretOrDer(bytes) = key.kind() else {
        return Err(ErrorKind::InvalidKeyFormat.into());
    };
    // A key verifies only its own family: an HS256 token is never checked against a public key
    // taken as an HMAC secret, whatever its header says.
    let public_key = |algorithm, scheme| -> Box<dyn JwtVerifier> {
        Box::new(PublicKey {
            algorithm,
            key: signature::UnparsedPublicKey::new(scheme, bytes.clone()),
        })
    };
    match (algorithm, key.family()) {
        (Algorithm::HS256, AlgorithmFamily::Hmac) => {
            Ok(Box::new(Hs256(hmac::Key::new(hmac::HMAC_SHA256, bytes))))
        }
        (Algorithm::RS256, AlgorithmFamily::Rsa) => Ok(public_key(
            Algorithm::RS256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        )),
        (Algorithm::EdDSA, AlgorithmFamily::Ed) => {
            Ok(public_key(Algorithm::EdDSA, &signature::ED25519))
        }
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

/// HMAC-SHA256 with a shared secret.
struct Hs256(hmac::Key);

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        Ok(hmac::sign(&self.0, message).as_ref().to_vec())
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    /// Constant-time comparison (ring's `hmac::verify`).
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> Result<(), SignatureError> {
        hmac::verify(&self.0, message, tag).map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

/// An issuer's public key: RSA (PKCS#1 `RSAPublicKey` DER) or Ed25519 (the 32 raw bytes).
struct PublicKey {
    algorithm: Algorithm,
    key: signature::UnparsedPublicKey<Vec<u8>>,
}

impl Verifier<Vec<u8>> for PublicKey {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        self.key
            .verify(message, signature)
            .map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for PublicKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// An RSA public key from PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`), for RS256; the error says
/// what is wrong with the file.
pub(crate) fn rsa_public_key_from_pem(pem: &[u8]) -> Result<DecodingKey, String> {
    let pkcs1 = if let Some(der) = pem_section(pem, "RSA PUBLIC KEY")? {
        der
    } else if let Some(der) = pem_section(pem, "PUBLIC KEY")? {
        let (oid, key) = subject_public_key(&der).ok_or("the PUBLIC KEY is not valid DER")?;
        if oid != OID_RSA_ENCRYPTION {
            return Err("the PUBLIC KEY is not an RSA key".to_owned());
        }
        key.to_vec()
    } else {
        return Err("no \"PUBLIC KEY\" or \"RSA PUBLIC KEY\" PEM block".to_owned());
    };
    let bits = rsa_modulus_bits(&pkcs1).ok_or("the RSA key is not valid DER")?;
    if !RSA_BITS.contains(&bits) {
        return Err(format!(
            "the RSA key has {bits} bits; {} to {} are accepted",
            RSA_BITS.start(),
            RSA_BITS.end()
        ));
    }
    Ok(DecodingKey::from_rsa_der(&pkcs1))
}

/// An Ed25519 public key from PEM (`PUBLIC KEY`), for EdDSA.
pub(crate) fn ed25519_public_key_from_pem(pem: &[u8]) -> Result<DecodingKey, String> {
    let der = pem_section(pem, "PUBLIC KEY")?.ok_or("no \"PUBLIC KEY\" PEM block")?;
    let (oid, key) = subject_public_key(&der).ok_or("the PUBLIC KEY is not valid DER")?;
    if oid != OID_ED25519 {
        return Err("the PUBLIC KEY is not an Ed25519 key".to_owned());
    }
    if key.len() != 32 {
        return Err(format!("the Ed25519 key has {} bytes, not 32", key.len()));
    }
    Ok(DecodingKey::from_ed_der(key))
}

/// The DER bytes of the first PEM block labelled `label`; `None` when there is none.
fn pem_section(pem: &[u8], label: &str) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).map_err(|_| "the file is not text".to_owned())?;
    let begin = format!("-----BEGIN {label}-----");
    let Some(start) = text.find(&begin) else {
        return Ok(None);
    };
    let body = &text[start + begin.len()..];
    let end = format!("-----END {label}-----");
    let stop = body
        .find(&end)
        .ok_or_else(|| format!("the {label} PEM block has no END line"))?;
    let base64: String = body[..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map(Some)
        .map_err(|e| format!("the {label} PEM block is not base64: {e}"))
}

/// One DER element at the start of `input`: its tag, its content and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length bytes (at most 4 here: keys are small).
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// The algorithm identifier and key bytes of a SubjectPublicKeyInfo (RFC 5280 4.1.2.7):
/// `SEQUENCE { SEQUENCE { OID, parameters }, BIT STRING }`, nothing after it.
fn subject_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (DER_SEQUENCE, info, []) = der_element(der)? else {
        return None;
    };
    let (DER_SEQUENCE, algorithm, rest) = der_element(info)? else {
        return None;
    };
    let (DER_OID, oid, _parameters) = der_element(algorithm)? else {
        return None;
    };
    let (DER_BIT_STRING, bits, []) = der_element(rest)? else {
        return None;
    };
    // The first byte of a BIT STRING counts unused bits: a key is whole bytes.
    let (0, key) = bits.split_first()? else {
        return None;
    };
    Some((oid, key))
}

/// The modulus size in bits of a PKCS#1 `RSAPublicKey`: `SEQUENCE { INTEGER n, INTEGER e }`.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (DER_SEQUENCE, key, []) = der_element(der)? else {
        return None;
    };
    let (DER_INTEGER, modulus, rest) = der_element(key)? else {
        return None;
    };
    let (DER_INTEGER, _exponent, []) = der_element(rest)? else {
        return None;
    };
    let first = modulus.iter().position(|byte| *byte != 0)?;
    let significant = &modulus[first..];
    let leading_zeros = usize::try_from(significant[0].leading_zeros()).ok()?;
    Some(significant.len() * 8 - leading_zeros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn b64url(text: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .expect("base64url")
    }

    fn verify(algorithm: Algorithm, key: &DecodingKey, token: &str) -> bool {
        let (message, signature) = token.rsplit_once('.').expect("a JWS");
        match new_verifier(&algorithm, key) {
            Ok(verifier) => verifier
                .verify(message.as_bytes(), &b64url(signature))
                .is_ok(),
            Err(_) => false,
        }
    }

    /// RFC 7515 appendix A.1: the HS256 example, checked both ways.
    #[test]
    fn hs256_matches_rfc_7515() {
        let secret = b64url(
            "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
        );
        let message = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let signature = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let token = format!("{message}.{signature}");
        let key = DecodingKey::from_secret(&secret);
        assert!(verify(Algorithm::HS256, &key, &token));
        assert!(!verify(
            Algorithm::HS256,
            &key,
            &format!("{message}x.{signature}")
        ));
        assert!(!verify(
            Algorithm::HS256,
            &DecodingKey::from_secret(b"other"),
            &token
        ));
        let signer = new_signer(&Algorithm::HS256, &EncodingKey::from_secret(&secret))
            .expect("an HS256 signer");
        assert_eq!(
            signer.try_sign(message.as_bytes()).expect("signed"),
            b64url(signature)
        );
        // Other HMAC sizes are not natter's: refused as not accepted.
        assert!(new_verifier(&Algorithm::HS384, &key).is_err());
        assert!(new_signer(&Algorithm::HS512, &EncodingKey::from_secret(&secret)).is_err());
    }

    /// RFC 8037 appendix A.4: the Ed25519 example, with its public key as SubjectPublicKeyInfo.
    #[test]
    fn eddsa_matches_rfc_8037() {
        let x = b64url("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(&x);
        let pem = pem_of("PUBLIC KEY", &spki);
        let key = ed25519_public_key_from_pem(pem.as_bytes()).expect("an Ed25519 key");
        let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        assert!(verify(Algorithm::EdDSA, &key, token));
        assert!(!verify(
            Algorithm::EdDSA,
            &key,
            &token.replace("RXhh", "RXhi")
        ));
        // The same key is never an HMAC secret.
        assert!(new_verifier(&Algorithm::HS256, &key).is_err());
    }

    /// RFC 7515 appendix A.2: the RS256 example, its key (n, e) as PKCS#1 and as SPKI PEM.
    #[test]
    fn rs256_matches_rfc_7515() {
        let n = b64url(concat!(
            "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1",
            "Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpa",
            "SHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4",
            "LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
        ));
        let e = b64url("AQAB");
        let pkcs1 = der(
            DER_SEQUENCE,
            &[
                der(DER_INTEGER, &[&[0], &n[..]].concat()),
                der(DER_INTEGER, &e),
            ]
            .concat(),
        );
        let mut algorithm = der(DER_OID, OID_RSA_ENCRYPTION);
        algorithm.extend_from_slice(&[0x05, 0x00]);
        let spki = der(
            DER_SEQUENCE,
            &[
                der(DER_SEQUENCE, &algorithm),
                der(DER_BIT_STRING, &[&[0], &pkcs1[..]].concat()),
            ]
            .concat(),
        );
        let token = concat!(
            "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.",
            "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw",
        );
        for pem in [
            pem_of("RSA PUBLIC KEY", &pkcs1),
            pem_of("PUBLIC KEY", &spki),
        ] {
            let key = rsa_public_key_from_pem(pem.as_bytes()).expect("an RSA key");
            assert!(verify(Algorithm::RS256, &key, token));
            assert!(!verify(
                Algorithm::RS256,
                &key,
                &token.replace("eyJpc3Mi", "eyJpc3Ni")
            ));
            assert!(new_verifier(&Algorithm::HS256, &key).is_err());
            assert!(new_verifier(&Algorithm::RS512, &key).is_err());
        }
        // A 1024-bit key is refused when the file is read, not at every token.
        let short = der(
            DER_SEQUENCE,
            &[der(DER_INTEGER, &n[..128]), der(DER_INTEGER, &e)].concat(),
        );
        let refused = rsa_public_key_from_pem(pem_of("RSA PUBLIC KEY", &short).as_bytes());
        assert_eq!(
            refused.err().as_deref(),
            Some("the RSA key has 1024 bits; 2048 to 8192 are accepted")
        );
    }

    #[test]
    fn bad_pem_files_say_what_is_wrong() {
        let ed = pem_of("PUBLIC KEY", &[0x30, 0x03, 0x02, 0x01, 0x00]);
        for (pem, error) in [
            ("", "no \"PUBLIC KEY\" PEM block"),
            (
                "-----BEGIN PUBLIC KEY-----\nAAAA\n",
                "the PUBLIC KEY PEM block has no END line",
            ),
            (
                "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n",
                "the PUBLIC KEY PEM block is not base64: Invalid symbol 33, offset 0.",
            ),
            (ed.as_str(), "the PUBLIC KEY is not valid DER"),
        ] {
            assert_eq!(
                ed25519_public_key_from_pem(pem.as_bytes()).err().as_deref(),
                Some(error),
                "{pem}"
            );
        }
        // Truncated and overlong DER is refused, never read past its end.
        for bytes in [
            &[0x30, 0x05, 0x02][..],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x80],
            &[0x30],
        ] {
            assert!(der_element(bytes).is_none());
            assert!(subject_public_key(bytes).is_none());
            assert!(rsa_modulus_bits(bytes).is_none());
        }
    }

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(u8::try_from(len).expect("short"));
        } else {
            let bytes = u32::try_from(len).expect("small").to_be_bytes();
            let skip = bytes.iter().position(|b| *b != 0).unwrap_or(3);
            out.push(0x80 | u8::try_from(4 - skip).expect("count"));
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn pem_of(label: &str, der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }
}
