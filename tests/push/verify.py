#!/usr/bin/env python3
"""Checks natter's Web Push and webhook crypto with implementations nobody here wrote (issue 17).

Reads the JSON that `cargo run --example push_vectors -- FILE` writes and checks:
- every push body decrypts with Mozilla's `http_ece` (aes128gcm) under the subscription's private
  key to the plaintext, within the 4096-byte body push services accept; a flipped byte fails;
- every VAPID header verifies with `py_vapid`, and again with `cryptography` directly (ES256 over
  the JWT's signing input), with the claims RFC 8292 asks for (aud = the endpoint's origin as
  Python's urllib reads it, exp at most 24 h ahead, sub mailto:/https:);
- every webhook signature equals what the `standardwebhooks` package signs, and verifies with its
  `Webhook.verify` (current timestamps); a changed body fails.
Also decrypts RFC 8291's own example, so a broken checker cannot pass natter's output.

Usage: verify.py VECTORS.json  (exit status 1 and a message on the first failure)
"""

import base64
import json
import struct
import sys
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import http_ece
import py_vapid
import standardwebhooks
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


class Failure(Exception):
    pass


def check(condition, message):
    # Not `assert`: `python -O` would drop it.
    if not condition:
        raise Failure(message)


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decrypt(body, private_key, auth_secret):
    return http_ece.decrypt(body, private_key=private_key, auth_secret=auth_secret, version="aes128gcm")


def check_rfc8291_example():
    # RFC 8291 section 5 / appendix A: the user agent's private key and the message.
    d = int.from_bytes(b64url("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"), "big")
    ua = ec.derive_private_key(d, ec.SECP256R1())
    body = b64url(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
        "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
        "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
    )
    plain = decrypt(body, ua, b64url("BTBZMqHH6r4Tts7J_aSIgg"))
    check(plain == b"When I grow up, I want to be a watermelon", "the checker cannot read RFC 8291's example")


def check_pushes(vectors):
    pushes = vectors["pushes"]
    check(len(pushes) > 0, "no pushes")
    check(vectors["too_large_refused"] is True, "natter did not refuse a plaintext too large for one record")
    for index, push in enumerate(pushes):
        key = serialization.load_der_private_key(b64url(push["ua_private_pkcs8"]), password=None)
        check(isinstance(key, ec.EllipticCurvePrivateKey), f"push {index}: not an EC key")
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        check(public == b64url(push["ua_public"]), f"push {index}: the key pair does not match")
        body = b64url(push["body"])
        plaintext = b64url(push["plaintext"])
        check(len(body) <= 4096, f"push {index}: body of {len(body)} bytes, more than 4096")
        salt, rs, idlen = body[:16], struct.unpack("!I", body[16:20])[0], body[20]
        check(rs == 4096 and idlen == 65, f"push {index}: header rs={rs} idlen={idlen}")
        check(len(body) == 86 + len(plaintext) + 1 + push["padding"] + 16, f"push {index}: length")
        try:
            plain = decrypt(body, key, b64url(push["auth_secret"]))
        except Exception as error:
            raise Failure(f"push {index}: http_ece cannot decrypt it: {error}")
        check(plain == plaintext, f"push {index}: http_ece decrypted {plain[:40]!r}, not the plaintext")
        tampered = bytearray(body)
        tampered[-1] ^= 1
        try:
            decrypt(bytes(tampered), key, b64url(push["auth_secret"]))
        except Exception:
            pass
        else:
            raise Failure(f"push {index}: a tampered body decrypted")
    print(f"push encryption: {len(pushes)} bodies decrypted by http_ece, tampering detected")


def origin(url):
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}[parts.scheme]
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def check_vapid(vectors):
    headers = vectors["vapid"]["headers"]
    server_key = vectors["vapid"]["application_server_key"]
    check(len(b64url(server_key)) == 65 and b64url(server_key)[0] == 4, "applicationServerKey is not an uncompressed point")
    for index, item in enumerate(headers):
        header = item["authorization"]
        check(header.startswith("vapid t="), f"vapid {index}: scheme")
        token, _, k = header[len("vapid t="):].partition(", k=")
        check(k == server_key, f"vapid {index}: k is not the applicationServerKey")
        # py_vapid's parser splits "t=…,k=…" on the comma and does not strip the optional
        # whitespace HTTP's auth-param list allows after it (RFC 8292's example has it), so it
        # gets the header with that whitespace removed; nothing else is changed.
        check(py_vapid.Vapid02.verify(f"vapid t={token},k={k}") is True, f"vapid {index}: py_vapid rejects the signature")
        signing_input, _, signature = token.rpartition(".")
        raw = b64url(signature)
        check(len(raw) == 64, f"vapid {index}: signature of {len(raw)} bytes, not r||s")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url(k))
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Failure(f"vapid {index}: cryptography rejects the signature")
        try:
            public.verify(der, signing_input.encode() + b"x", ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            pass
        else:
            raise Failure(f"vapid {index}: a changed token verified")
        jwt_header_b64, claims_b64 = signing_input.split(".")
        jwt_header = json.loads(b64url(jwt_header_b64))
        claims = json.loads(b64url(claims_b64))
        check(jwt_header == {"typ": "JWT", "alg": "ES256"}, f"vapid {index}: JWT header {jwt_header}")
        check(claims["aud"] == origin(item["endpoint"]), f"vapid {index}: aud {claims['aud']} for {item['endpoint']}")
        check(claims["exp"] == item["now"] + item["ttl"], f"vapid {index}: exp {claims['exp']}")
        check(claims["exp"] - item["now"] <= 24 * 3600, f"vapid {index}: exp more than 24 h ahead")
        check(claims["sub"] == item["subject"] and py_vapid._check_sub(claims["sub"]), f"vapid {index}: sub {claims['sub']}")
        check(set(claims) == {"aud", "exp", "sub"}, f"vapid {index}: claims {sorted(claims)}")
    print(f"VAPID: {len(headers)} headers verified by py_vapid and cryptography, claims checked")


def check_webhooks(vectors):
    items = vectors["webhooks"]
    verified = 0
    for index, item in enumerate(items):
        hook = standardwebhooks.Webhook(item["secret"])
        when = datetime.fromtimestamp(item["timestamp"], tz=timezone.utc)
        expected = hook.sign(item["msg_id"], when, item["body"])
        check(item["signature"] == expected, f"webhook {index}: {item['signature']} != {expected}")
        headers = {
            "webhook-id": item["msg_id"],
            "webhook-timestamp": str(item["timestamp"]),
            "webhook-signature": item["signature"],
        }
        if abs(time.time() - item["timestamp"]) < 240:
            hook.verify(item["body"].encode(), headers, json_parse=False)
            verified += 1
            try:
                hook.verify((item["body"] + " ").encode(), headers, json_parse=False)
            except standardwebhooks.webhooks.WebhookVerificationError:
                pass
            else:
                raise Failure(f"webhook {index}: a changed body verified")
    check(verified >= 1, "no webhook vector is recent enough for Webhook.verify: write the vectors again")
    spec = [i for i in items if i["msg_id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"]
    check(
        len(spec) == 1 and spec[0]["signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "the specification's example is missing or differs",
    )
    print(f"webhooks: {len(items)} signatures equal standardwebhooks' own, {verified} pass Webhook.verify")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as file:
        vectors = json.load(file)
    try:
        check_rfc8291_example()
        check_pushes(vectors)
        check_vapid(vectors)
        check_webhooks(vectors)
    except Failure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print("all independent checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
