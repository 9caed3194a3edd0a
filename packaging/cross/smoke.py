#!/usr/bin/env python3
"""Smoke test of a running natter from outside: two logins over HTTP, a room, and one message
sent over one WebSocket and received over another.

    smoke.py --port PORT --admin-password-file FILE --user bob --user-password-file FILE

The admin logs in, creates a public room, and sends a message over /ws; the second user (who
must exist: CI adds it with `natter user add` through the control socket) joins the room over
its own WebSocket and must receive that message. Exits 0 and prints what it saw, or exits 1
saying which step failed. Loopback only; every wait is bounded (--timeout, per step).
"""

import argparse
import sys
import time

from natter_client import Failure, connect, http_json, login


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-password-file", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--user-password-file", required=True)
    parser.add_argument("--room", default="pi-smoke")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per step")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("loopback only")
    host, port, timeout = args.host, args.port, args.timeout
    with open(args.admin_password_file) as f:
        admin_password = f.read().strip()
    with open(args.user_password_file) as f:
        user_password = f.read().strip()

    started = time.monotonic()
    admin, took = login(host, port, "admin", admin_password, timeout)
    print(f"login admin over HTTP: ok ({took:.2f} s)")
    user, took = login(host, port, args.user, user_password, timeout)
    print(f"login {args.user} over HTTP: ok ({took:.2f} s)")

    status, body = http_json(host, port, "POST", "/api/v1/rooms",
                             {"name": args.room}, admin, timeout)
    if status != 201:
        raise Failure(f"create room {args.room}: HTTP {status} {body!r}")
    print(f"room {args.room} created: ok")

    listener = connect(host, port, user, timeout)
    sender = connect(host, port, admin, timeout)
    try:
        joined = listener.request("Join", {"room": args.room, "since": 0}, "j1", timeout)
        if joined.get("data", {}).get("status") != "joined":
            raise Failure(f"Join as {args.user}: {joined!r}")
        content = f"hello from the host at {time.time():.0f}"
        ack = sender.request("Send", {"room": args.room, "content": content}, "s1", timeout)
        if ack.get("type") != "Ack" or ack.get("data", {}).get("status") != "stored":
            raise Failure(f"Send as admin: {ack!r}")
        message = listener.recv_where(
            lambda f: f.get("type") == "Message" and f.get("data", {}).get("content") == content,
            timeout, "the message on the other WebSocket")
        data = message["data"]
        if data.get("author") != "admin" or data.get("seq") != ack["data"]["seq"]:
            raise Failure(f"received {message!r} for ack {ack!r}")
        print(f"WebSocket: admin sent seq {data['seq']} (Ack stored), "
              f"{args.user} received it: ok")
    finally:
        listener.close()
        sender.close()
    print(f"smoke passed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except (Failure, OSError) as e:
        print(f"smoke FAILED: {e}", file=sys.stderr)
        sys.exit(1)
