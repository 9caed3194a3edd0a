"""A small natter client for the cross-build checks: HTTP (login, rooms) and a WebSocket
client (RFC 6455, text frames, client masking) on the standard library only.

Every wait has a deadline; nothing here retries forever. Used by smoke.py (the CI smoke test
of the emulated arm64 package) and sizing.py (the README's Pi-class sizing table). Loopback
only: the callers pass 127.0.0.1.
"""

import base64
import hashlib
import http.client
import json
import os
import socket
import struct
import time

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Failure(Exception):
    """A check failed: the message says which and what was seen."""


def http_json(host, port, method, path, body=None, token=None, timeout=30):
    """One HTTP/1.1 request; returns (status, parsed JSON or text)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = "Bearer " + token
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return response.status, parsed
    finally:
        conn.close()


def login(host, port, username, password, timeout=60):
    """POST /api/token/; returns (access token, seconds the login took)."""
    started = time.monotonic()
    status, body = http_json(
        host, port, "POST", "/api/token/",
        {"username": username, "password": password}, timeout=timeout,
    )
    took = time.monotonic() - started
    if status != 200 or not isinstance(body, dict) or "access" not in body:
        raise Failure(f"login as {username}: HTTP {status} {body!r}")
    return body["access"], took


def _mask(payload, mask):
    """XORs `payload` with the repeated 4-byte `mask` (RFC 6455 5.3), as one big integer."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class WebSocket:
    """A client WebSocket: connect, send text (masked), receive text frames, answer pings."""

    def __init__(self, host, port, path, timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            self._fill(deadline)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode(errors="replace").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise Failure(f"upgrade of {path}: {lines[0]}")
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept:
            raise Failure(f"upgrade of {path}: wrong Sec-WebSocket-Accept {headers!r}")

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Failure("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout as e:
            raise Failure("timed out waiting for the server") from e
        if not chunk:
            raise Failure("the server closed the connection")
        self.buffer += chunk

    def _take(self, n, deadline):
        while len(self.buffer) < n:
            self._fill(deadline)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send_frame(self, opcode, payload):
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + _mask(payload, mask))

    def send_json(self, frame):
        self._send_frame(0x1, json.dumps(frame).encode())

    def recv_text(self, deadline):
        """The next complete text message; pings are answered, other control frames skipped."""
        parts = []
        while True:
            first, second = self._take(2, deadline)
            opcode, fin = first & 0x0F, first & 0x80
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8, deadline))[0]
            mask = self._take(4, deadline) if second & 0x80 else None
            payload = self._take(n, deadline)
            if mask:
                payload = _mask(payload, mask)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise Failure(f"closed by the server: {code} {payload[2:].decode(errors='replace')}")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode()

    def recv_where(self, select, timeout=30, what="a frame"):
        """Skips JSON frames until `select(frame)` holds; fails after `timeout` seconds overall."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                frame = json.loads(self.recv_text(deadline))
            except Failure as e:
                raise Failure(f"waiting for {what}: {e}; last frames: {seen[-3:]!r}") from e
            if select(frame):
                return frame
            seen.append(frame)

    def request(self, kind, data, frame_id, timeout=30):
        """Sends {"type", "data", "id"} and returns the reply with that id."""
        self.send_json({"type": kind, "data": data, "id": frame_id})
        return self.recv_where(lambda f: f.get("id") == frame_id, timeout, f"the reply to {kind}")

    def close(self):
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


def connect(host, port, token, timeout=30):
    """Opens /ws with ?token= and reads the welcome frame."""
    ws = WebSocket(host, port, "/ws?token=" + token, timeout)
    welcome = ws.recv_where(lambda f: f.get("type") == "Status", timeout, "the welcome frame")
    if welcome.get("data", {}).get("status") != "connected":
        raise Failure(f"welcome: {welcome!r}")
    return ws
