#!/usr/bin/env python3
"""Behind the real nginx (deploy/nginx.conf): clients from different
source addresses are told apart by the chat server (--trust-proxy), as its
admin door shows in a report.

    python3 tests/deploy/safety_check.py HOST HTTPS_PORT ADMIN_PORT TOKEN_FILE

Two wss:// clients, one from 127.0.0.2 and one from 127.0.0.3, are paired
through nginx; the first reports the second; the report in the admin door
(plain HTTP on loopback) must name 127.0.0.2 and 127.0.0.3, not nginx's
127.0.0.1. Prints "ok   NAME" / "FAIL NAME: why" lines like wss_check.py
and exits with the number of failures. Every socket wait is bounded (10 s).
"""
import http.client
import json
import socket
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import wss_check  # noqa: E402


def ws_from(src, host, port):
    """A wss:// chat client whose TCP connection comes from `src`."""
    real = socket.create_connection

    def bound(address, timeout=wss_check.TIMEOUT, source_address=None):
        return real(address, timeout=timeout, source_address=(src, 0))

    socket.create_connection = bound
    try:
        return wss_check.Ws(host, port, "/", True, "chat.example.com")
    finally:
        socket.create_connection = real


def expect_type(ws, kind):
    msg = ws.recv_json()
    if msg.get("type") != kind:
        raise AssertionError(f"expected {kind}, got {msg}")
    return msg


def main():
    host, port, admin_port, token_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    token = open(token_file).read().strip()
    failures = 0
    try:
        a = ws_from("127.0.0.2", host, port)
        expect_type(a, "waiting")
        b = ws_from("127.0.0.3", host, port)
        expect_type(b, "waiting")
        expect_type(a, "paired")
        expect_type(b, "paired")
        b.send_json({"type": "message", "text": "through nginx"})
        expect_type(a, "message")
        a.send_json({"type": "report", "reason": "spam", "note": "nginx test"})
        expect_type(a, "reported")
        expect_type(a, "waiting")
        c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
        c.request("GET", "/admin/reports", headers={"Authorization": f"Bearer {token}"})
        r = c.getresponse()
        reports = json.loads(r.read())
        assert r.status == 200, r.status
        got = (reports[-1]["reporter"], reports[-1]["reported"])
        assert got == ("127.0.0.2", "127.0.0.3"), got
        assert reports[-1]["messages"] == [{"from": "reported", "text": "through nginx"}], reports[-1]
        print("ok   behind nginx, clients from 127.0.0.2 and 127.0.0.3 are told apart (report in the admin door)")
        a.close()
        b.close()
    except Exception as e:  # noqa: BLE001 - report any failure as a FAIL line
        failures += 1
        print(f"FAIL behind nginx, client addresses: {e!r}")
    sys.exit(failures)


if __name__ == "__main__":
    main()
