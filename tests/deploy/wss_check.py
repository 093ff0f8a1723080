#!/usr/bin/env python3
"""Checks a chat server through a TLS proxy, using only the standard library.

    python3 tests/deploy/wss_check.py HOST PORT [--plain] [--host-header NAME]

Speaks HTTPS (http.client) and a minimal hand-rolled WebSocket client
(masked frames out, frames in, fragmentation and pings handled) over
`ssl` + `socket`. Certificate verification is off: the test proxy uses a
self-signed certificate made at test time. `--plain` talks to the server
directly without TLS (to check the checker).

Prints one line per check, "ok   NAME" or "FAIL NAME: why", and exits with
the number of failures (0 = all passed). Every socket operation is bounded
by a 10 s timeout.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import struct
import sys

TIMEOUT = 10.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class WsError(Exception):
    pass


class Ws:
    """A minimal RFC 6455 client: enough for text/binary/ping/close."""

    def __init__(self, host, port, path, tls, host_header):
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        self.sock = tls_context().wrap_socket(raw, server_hostname=host_header) if tls else raw
        self.sock.settimeout(TIMEOUT)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        req = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host_header}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        )
        self.sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
            if len(self.buf) > 16384:
                raise WsError("handshake response head too long")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise WsError(f"handshake answered {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise WsError("bad Sec-WebSocket-Accept")
        if headers.get("upgrade", "").lower() != "websocket":
            raise WsError("no 'Upgrade: websocket' in the 101")

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise WsError("connection closed by peer")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload=b"", fin=True):
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text):
        self.send_frame(0x1, text.encode())

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def read_frame(self):
        b0, b1 = self._take(2)
        if b1 & 0x80:
            raise WsError("server frame is masked")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._take(n)

    def recv(self):
        """Next data message as (opcode, payload); answers pings on the way.
        A close frame is returned as (0x8, payload)."""
        opcode, parts = None, []
        while True:
            fin, op, payload = self.read_frame()
            if op == 0x9:
                self.send_frame(0xA, payload)
                continue
            if op == 0xA:
                continue
            if op == 0x8:
                return op, payload
            if op == 0x0:
                if opcode is None:
                    raise WsError("continuation without a first frame")
            else:
                if opcode is not None:
                    raise WsError("new data frame inside a fragmented message")
                opcode = op
            parts.append(payload)
            if fin:
                return opcode, b"".join(parts)

    def recv_json(self):
        op, payload = self.recv()
        if op != 0x1:
            raise WsError(f"expected a text message, got opcode {op} {payload[:60]!r}")
        return json.loads(payload.decode())

    def close(self, code=1000):
        try:
            self.send_frame(0x8, struct.pack("!H", code))
            op, payload = self.recv()
            return op, payload
        finally:
            self.sock.close()


def http_get(args, path):
    if args.plain:
        conn = http.client.HTTPConnection(args.host, args.port, timeout=TIMEOUT)
    else:
        conn = http.client.HTTPSConnection(args.host, args.port, timeout=TIMEOUT, context=tls_context())
    try:
        conn.request("GET", path, headers={"Host": args.host_header})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def expect(cond, why):
    if not cond:
        raise AssertionError(why)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--plain", action="store_true", help="no TLS (talk to chat directly)")
    ap.add_argument("--host-header", default="chat.example.com")
    args = ap.parse_args()
    tls = not args.plain
    ws = lambda path: Ws(args.host, args.port, path, tls, args.host_header)  # noqa: E731
    failures = 0

    def check(name):
        def run(fn):
            nonlocal failures
            try:
                fn()
                print(f"ok   {name}", flush=True)
            except Exception as e:  # noqa: BLE001 - report every failure the same way
                failures += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            return fn
        return run

    @check("GET /healthz answers 200 ok")
    def _():
        status, headers, body = http_get(args, "/healthz")
        expect(status == 200, f"status {status}")
        expect(body == b"ok\n", f"body {body!r}")
        expect(headers.get("content-type", "").startswith("text/plain"), f"content-type {headers.get('content-type')}")

    @check("GET / serves the chat page")
    def _():
        status, headers, body = http_get(args, "/")
        expect(status == 200, f"status {status}")
        expect("text/html" in headers.get("content-type", ""), f"content-type {headers.get('content-type')}")
        expect(b'id="status"' in body and b"<script" in body, "body is not the chat page")

    @check("GET /stats answers JSON counts")
    def _():
        status, _, body = http_get(args, "/stats")
        expect(status == 200, f"status {status}")
        j = json.loads(body)
        expect(all(isinstance(j.get(k), int) for k in ("online", "waiting", "chatting")), f"body {body!r}")

    @check("echo: text, binary, a 1000-byte message, ping and close")
    def _():
        c = ws("/echo")
        c.send_text("hello through the proxy ✓")
        expect(c.recv() == (0x1, "hello through the proxy ✓".encode()), "text not echoed")
        blob = bytes(range(256))
        c.send_frame(0x2, blob)
        expect(c.recv() == (0x2, blob), "binary not echoed")
        big = ("0123456789" * 100).encode()
        c.send_frame(0x1, big)
        expect(c.recv() == (0x1, big), "1000-byte text not echoed")
        c.send_frame(0x9, b"are you there")
        fin, op, payload = c.read_frame()
        expect((op, payload) == (0xA, b"are you there"), f"ping answered with opcode {op} {payload!r}")
        op, payload = c.close(1000)
        expect(op == 0x8, f"no close frame back (opcode {op})")

    @check("chat: two clients wait, get paired, a message and typing relay, leaving is seen")
    def _():
        a = ws("/")
        m = a.recv_json()
        expect(m.get("type") == "waiting" and isinstance(m.get("online"), int), f"A's first message {m}")
        b = ws("/")
        m = b.recv_json()
        expect(m.get("type") == "waiting", f"B's first message {m}")
        m = b.recv_json()
        expect(m.get("type") == "paired" and m.get("common") == [], f"B got {m}")
        m = a.recv_json()
        expect(m.get("type") == "paired", f"A got {m}")
        a.send_json({"type": "typing", "active": True})
        expect(b.recv_json() == {"type": "typing", "active": True}, "typing not relayed")
        a.send_json({"type": "message", "text": "hi from A <b>über</b>"})
        expect(b.recv_json() == {"type": "message", "text": "hi from A <b>über</b>"}, "message not relayed")
        b.send_json({"type": "message", "text": "hi back"})
        expect(a.recv_json() == {"type": "message", "text": "hi back"}, "reply not relayed")
        op, _ = b.close(1000)
        expect(op == 0x8, "B got no close frame back")
        m = a.recv_json()
        expect(m == {"type": "left", "reason": "disconnected"}, f"A got {m}")
        a.close(1000)

    return failures


if __name__ == "__main__":
    sys.exit(main())
