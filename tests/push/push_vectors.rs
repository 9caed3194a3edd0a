//! Writes Web Push and webhook vectors made by natter's own code (`natter::push`,
//! `natter::webhooks`) as JSON, for implementations nobody here wrote to check:
//! `tests/push/verify.py` decrypts the pushes with Mozilla's `http_ece`, verifies the VAPID
//! headers with `py_vapid` and `cryptography`, and the webhook signatures with
//! `standardwebhooks` (issue 17; `.ci/run` runs both).
//!
//! Usage: `cargo run --example push_vectors -- OUT.json`. The subscriptions' private keys are
//! in the file (fresh for each run, made here with ring as PKCS#8 P-256 keys: the same key
//! serves ECDSA and ECDH); the webhook timestamps are the current time, so the file is checked
//! right after it is written.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use natter::push::{ece, vapid::VapidKey};
use natter::webhooks::sign::{self, Secret};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: push_vectors OUT.json")?;
    let rng = SystemRandom::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();

    // Two subscriptions, as a browser makes them: a P-256 key pair and a 16-byte auth secret.
    let mut subscriptions = Vec::new();
    for _ in 0..2 {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "key generation")?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| "key load")?;
        let mut auth = [0u8; 16];
        rng.fill(&mut auth).map_err(|_| "random")?;
        subscriptions.push((
            pkcs8.as_ref().to_vec(),
            pair.public_key().as_ref().to_vec(),
            auth,
        ));
    }
    let payload = json!({
        "kind": "dm", "from": "alice", "room": "dm:alice:bob", "seq": 42,
        "text": "Grüße, Bob — 今日は 🍉",
    })
    .to_string();
    let cases: Vec<(Vec<u8>, usize)> = vec![
        (Vec::new(), 0),
        (b"hello".to_vec(), 0),
        (payload.clone().into_bytes(), 0),
        (payload.clone().into_bytes(), 31),
        (vec![b'x'; ece::MAX_PLAINTEXT], 0),
        (
            b"short, padded to the limit".to_vec(),
            ece::MAX_PLAINTEXT - 26,
        ),
    ];
    let mut pushes = Vec::new();
    for (index, (plaintext, padding)) in cases.iter().enumerate() {
        let (pkcs8, public, auth) = &subscriptions[index % subscriptions.len()];
        let body = ece::encrypt(plaintext, public, auth, *padding)?;
        pushes.push(json!({
            "ua_private_pkcs8": URL_SAFE_NO_PAD.encode(pkcs8),
            "ua_public": URL_SAFE_NO_PAD.encode(public),
            "auth_secret": URL_SAFE_NO_PAD.encode(auth),
            "plaintext": URL_SAFE_NO_PAD.encode(plaintext),
            "padding": padding,
            "body": URL_SAFE_NO_PAD.encode(&body),
        }));
    }
    // Refused, not truncated: one byte more than a push body holds.
    let (_, public, auth) = &subscriptions[0];
    let too_large = ece::encrypt(&vec![b'x'; ece::MAX_PLAINTEXT + 1], public, auth, 0).is_err();

    let key = VapidKey::generate()?;
    let again = VapidKey::from_pkcs8(key.pkcs8())?;
    let mut vapid = Vec::new();
    for (endpoint, subject, ttl) in [
        (
            "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
            "mailto:admin@chat.example.org",
            12 * 3600,
        ),
        (
            "https://fcm.googleapis.com/fcm/send/abc:def",
            "https://chat.example.org",
            24 * 3600,
        ),
        (
            "https://Push.Example.NET:8443/p/1?x=y",
            "mailto:ops@example.org",
            60,
        ),
        ("http://127.0.0.1:8080/push/1", "mailto:test@localhost", 600),
    ] {
        vapid.push(json!({
            "endpoint": endpoint,
            "subject": subject,
            "now": now,
            "ttl": ttl,
            "authorization": again.authorization(endpoint, subject, now, ttl)?,
        }));
    }

    let secret = Secret::generate()?;
    let mut webhooks: Vec<Value> = Vec::new();
    for (index, body) in [
        json!({"type": "message.created", "data": {"room": "general", "seq": 7, "text": "hi ✓"}})
            .to_string(),
        "{}".to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        let msg_id = format!("msg_natter_{index}");
        let signature = sign::sign(secret.bytes(), &msg_id, now as i64, body.as_bytes());
        webhooks.push(json!({
            "secret": secret.encoded(), "msg_id": msg_id, "timestamp": now,
            "body": body, "signature": signature,
        }));
    }
    // The specification's example, with its fixed timestamp (checked by signing, not by
    // verify, which refuses a timestamp more than five minutes from now).
    let example = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    webhooks.push(json!({
        "secret": example.encoded(), "msg_id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "timestamp": 1614265330, "body": r#"{"test": 2432232314}"#,
        "signature": sign::sign(example.bytes(), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#),
    }));

    let vectors = json!({
        "generated_at": now,
        "max_plaintext": ece::MAX_PLAINTEXT,
        "too_large_refused": too_large,
        "pushes": pushes,
        "vapid": { "application_server_key": key.application_server_key(), "headers": vapid },
        "webhooks": webhooks,
    });
    std::fs::write(&out, serde_json::to_vec_pretty(&vectors)?)?;
    println!(
        "wrote {out}: {} pushes, {} VAPID headers, {} webhook signatures",
        pushes.len(),
        vapid.len(),
        webhooks.len()
    );
    Ok(())
}
