#!/usr/bin/env python3
"""Sizing figures for a small machine, measured on one natter binary (the README's Pi table):

    sizing.py --natter target/cross/aarch64-unknown-linux-gnu/release/natter

Starts `natter serve` itself on 127.0.0.1 with a fresh temporary data dir (an arm64 binary on an
x86_64 host runs under qemu-user through binfmt_misc; its RSS is then qemu's, translation cache
included) and prints, as one JSON object and as lines:

- idle RSS: after start (ready, no login yet) and after one login (argon2's memory);
- RSS per 1,000 idle authenticated WebSocket connections (--connections, default 2,000: RSS
  read at 0, half and all of them);
- login time with the configured argon2 cost (median of --logins sequential logins);
- disk per 100,000 messages (--messages of --message-bytes each, sent over 4 WebSockets with 32
  Sends in flight on each, every one acknowledged, so stored durably), from the data dir's size
  before and after (`du`, apparent and allocated), measured after a clean stop.

Limits raised for the run through the environment (not the defaults): connections per user,
message rate, the JSON heartbeat. Loopback only; every wait is bounded and the whole run stops
after --deadline seconds.
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time

from natter_client import Failure, connect, http_json, login

HOST = "127.0.0.1"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failure("no VmRSS")


def du(path):
    apparent = int(subprocess.run(["du", "-sb", path], check=True, capture_output=True,
                                  text=True).stdout.split()[0])
    allocated = int(subprocess.run(["du", "-sk", path], check=True, capture_output=True,
                                   text=True).stdout.split()[0]) * 1024
    return apparent, allocated


def free_port():
    import socket
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


class Daemon:
    def __init__(self, natter, data_dir, port, env_extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NATTER_")}
        env.update(env_extra)
        env["NATTER_CONFIG"] = ""
        self.log = open(os.path.join(os.path.dirname(data_dir), "natter.log"), "w")
        self.proc = subprocess.Popen(
            [natter, "serve", "--listen", f"{HOST}:{port}", "--data-dir", data_dir],
            env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile)
        self.port = port
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"natter exited with {self.proc.returncode} before it was ready")
            try:
                status, _ = http_json(HOST, port, "GET", "/readyz", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise Failure("natter was not ready within 120 s")

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise Failure("natter did not stop within 60 s of SIGTERM")
        self.log.close()
        if code != 0:
            raise Failure(f"natter exited with {code} on SIGTERM")


def settle(daemon, seconds=3):
    time.sleep(seconds)
    return daemon.rss()


def send_messages(port, token, room, total, size, streams, window, deadline):
    """Sends `total` messages over `streams` WebSockets, `window` in flight on each; returns the
    number acknowledged as stored."""
    content = ("x" * size)[:size]
    per = [total // streams + (1 if i < total % streams else 0) for i in range(streams)]
    acked = [0] * streams
    errors = []

    def run(i):
        try:
            ws = connect(HOST, port, token)
            sent = 0
            while acked[i] < per[i]:
                while sent < per[i] and sent - acked[i] < window:
                    ws.send_json({"type": "Send", "data": {"room": room, "content": content},
                                  "id": f"{i}-{sent}"})
                    sent += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Failure("deadline passed while sending")
                frame = ws.recv_where(lambda f: f.get("type") in ("Ack", "Error"),
                                      min(remaining, 60), "an Ack")
                if frame["type"] != "Ack" or frame["data"].get("status") != "stored":
                    raise Failure(f"not stored: {frame!r}")
                acked[i] += 1
            ws.close()
        except (Failure, OSError) as e:
            errors.append(f"stream {i}: {e}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1, deadline - time.monotonic()))
    if errors:
        raise Failure("; ".join(errors))
    if any(t.is_alive() for t in threads):
        raise Failure("senders still running at the deadline")
    return sum(acked)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--natter", required=True, help="the natter binary to measure")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--message-bytes", type=int, default=100)
    parser.add_argument("--logins", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=1800, help="seconds for the whole run")
    parser.add_argument("--env", action="append", default=[], metavar="NATTER_X=Y",
                        help="more environment for natter, e.g. NATTER_STORE_CACHE_CAPACITY_MB=16")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline
    raise_nofile()
    out = {"binary": os.path.basename(args.natter)}

    env = {
        "NATTER_WS_MAX_CONNECTIONS_PER_USER": str(args.connections + 10),
        "NATTER_WS_MAX_CONNECTIONS": str(args.connections + 100),
        "NATTER_WS_MESSAGES_PER_MINUTE": "1000000000",
        "NATTER_WS_MESSAGE_BURST": "1000000",
        "NATTER_WS_PING_INTERVAL_SECS": "3600",
        "NATTER_AUTH_ACCESS_TOKEN_TTL_SECS": "7200",
        "NATTER_AUTH_LOGIN_MAX_FAILURES": "1000000",
    }
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("NATTER_"):
            parser.error(f"--env {item}: expected NATTER_NAME=VALUE")
        env[name] = value
    out["env"] = args.env
    with tempfile.TemporaryDirectory(prefix="natter-sizing-") as tmp:
        data_dir = os.path.join(tmp, "data")
        started = time.monotonic()
        daemon = Daemon(args.natter, data_dir, free_port(), env)
        out["ready_s"] = round(time.monotonic() - started, 2)
        try:
            out["rss_idle_kib"] = settle(daemon)
            with open(os.path.join(data_dir, "initial-admin-password")) as f:
                password = f.read().strip()
            times = []
            for _ in range(args.logins):
                token, took = login(HOST, daemon.port, "admin", password)
                times.append(took)
            times.sort()
            out["login_s_median"] = round(times[len(times) // 2], 3)
            out["login_s_all"] = [round(t, 3) for t in times]
            out["rss_after_logins_kib"] = settle(daemon)

            sockets = []
            rss_at = {0: daemon.rss()}
            half = args.connections // 2
            for n in range(1, args.connections + 1):
                if time.monotonic() > deadline:
                    raise Failure(f"deadline passed after {n - 1} connections")
                sockets.append(connect(HOST, daemon.port, token))
                if n in (half, args.connections):
                    rss_at[n] = settle(daemon)
            out["rss_by_connections_kib"] = rss_at
            per_conn = (rss_at[args.connections] - rss_at[0]) / args.connections
            out["rss_per_1000_connections_mib"] = round(per_conn * 1000 / 1024, 1)
            for ws in sockets:
                ws.close()
            sockets.clear()
            out["rss_after_closing_kib"] = settle(daemon, 5)

            status, body = http_json(HOST, daemon.port, "POST", "/api/v1/rooms",
                                     {"name": "sizing"}, token)
            if status != 201:
                raise Failure(f"create room: {status} {body!r}")
            daemon.stop()
            before = du(data_dir)
            daemon = Daemon(args.natter, data_dir, free_port(), env)
            token, _ = login(HOST, daemon.port, "admin", password)
            started = time.monotonic()
            stored = send_messages(daemon.port, token, "sizing", args.messages,
                                   args.message_bytes, 4, 32, deadline)
            took = time.monotonic() - started
            out["messages_stored"] = stored
            out["messages_per_s"] = round(stored / took, 1)
            out["rss_after_messages_kib"] = daemon.rss()
            daemon.stop()
            after = du(data_dir)
            scale = 100_000 / stored
            out["disk_before_bytes"] = {"apparent": before[0], "allocated": before[1]}
            out["disk_after_bytes"] = {"apparent": after[0], "allocated": after[1]}
            out["disk_per_100k_messages_mib"] = {
                "apparent": round((after[0] - before[0]) * scale / 2**20, 1),
                "allocated": round((after[1] - before[1]) * scale / 2**20, 1),
            }
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(timeout=10)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    try:
        main()
    except (Failure, OSError) as e:
        print(f"sizing FAILED: {e}", file=sys.stderr)
        sys.exit(1)
