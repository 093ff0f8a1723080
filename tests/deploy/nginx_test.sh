#!/usr/bin/env bash
# Proves deploy/ works: runs the chat binary behind Debian's nginx configured
# from deploy/nginx.conf, with a self-signed certificate made here, and checks
# the page, /healthz, /stats, the echo endpoint and a chat session over
# https:// and wss:// (tests/deploy/wss_check.py), that /metrics answers
# loopback and private client addresses only, and that clients from
# 127.0.0.2 and 127.0.0.3 are told apart behind nginx (--trust-proxy, as
# deploy/chat.service runs it; tests/deploy/safety_check.py). Also runs
# `systemd-analyze verify` on deploy/chat.service when systemd-analyze exists.
#
#   tests/deploy/nginx_test.sh path/to/chat
#
# Loopback only; every wait is bounded; everything it starts is stopped on
# exit. Last line: "N passed, M failed"; exit status 1 on any failure.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
NGINX=${NGINX:-/usr/sbin/nginx}

usage() { echo "usage: $0 SERVER_BINARY" >&2; exit 2; }
[ $# -eq 1 ] || usage
bin=$1
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
[ -x "$bin" ] || { echo "nginx_test: $bin is not an executable file (build it first: cargo build --release)" >&2; exit 2; }
if [ ! -x "$NGINX" ]; then
    echo "nginx_test: $NGINX not found: install Debian's nginx first (apt-get install -y nginx-light, or nginx)" >&2
    exit 1
fi
for tool in python3 openssl; do
    command -v "$tool" >/dev/null || { echo "nginx_test: $tool not found" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/chat-nginx-test.XXXXXX")
chmod 755 "$tmp"
mkdir -p "$tmp/tmp"
chat_pid= nginx_pid=
cleanup() {
    for pid in $nginx_pid $chat_pid; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in $nginx_pid $chat_pid; do
        # bounded: at most 5 s each, then SIGKILL
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
    if [ "$failed" -ne 0 ]; then
        echo "--- chat log (last 20 lines)"; tail -n 20 "$tmp/chat.log" 2>/dev/null
        echo "--- nginx error log (last 20 lines)"; tail -n 20 "$tmp/error.log" 2>/dev/null
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

# Four distinct free loopback ports: chat, nginx https, nginx http, admin door.
read -r back https http admin < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')

# wait_port PORT PID: until PORT accepts a TCP connection (10 s at most) and
# the process PID is still alive.
wait_port() {
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# --- chat, with the safety options deploy/chat.service passes
(umask 077 && echo "nginx-test-token" >"$tmp/admin-token")
"$bin" --listen "127.0.0.1:$back" --trust-proxy 127.0.0.1 \
    --max-connections-per-ip 64 --sessions-per-minute-per-ip 60 \
    --admin-listen "127.0.0.1:$admin" --admin-token-file "$tmp/admin-token" \
    >"$tmp/chat.log" 2>&1 &
chat_pid=$!
if wait_port "$back" "$chat_pid"; then ok "chat listens on 127.0.0.1:$back"; else fail "chat did not start on 127.0.0.1:$back"; finish; fi

# --- certificate, made now, valid one day
if timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 1 -subj "/CN=chat.example.com" \
        -addext "subjectAltName=DNS:chat.example.com,IP:127.0.0.1" >"$tmp/openssl.log" 2>&1; then
    ok "self-signed certificate made"
else
    fail "openssl could not make a certificate: $(tail -n 3 "$tmp/openssl.log")"; finish
fi

# --- nginx config: deploy/nginx.conf with loopback ports and the test cert,
# wrapped in a minimal main config whose files all live in $tmp.
if python3 - "$root/deploy/nginx.conf" "$tmp" "$back" "$https" "$http" >"$tmp/gen.log" 2>&1 <<'PY'
import re, sys
src, tmp, back, https, http = sys.argv[1:]
conf = open(src).read()
subs = [
    (r"(?m)^(\s*)listen \[::\]:\d+[^;]*;\n", ""),  # no IPv6 in the test
    (r"(?m)^(\s*)listen 443 ssl;", rf"\1listen 127.0.0.1:{https} ssl;"),
    (r"(?m)^(\s*)listen 80;", rf"\1listen 127.0.0.1:{http};"),
    (r"server 127\.0\.0\.1:10000;", f"server 127.0.0.1:{back};"),
    (r"(?m)^(\s*)ssl_certificate\s+\S+;", rf"\1ssl_certificate {tmp}/cert.pem;"),
    (r"(?m)^(\s*)ssl_certificate_key\s+\S+;", rf"\1ssl_certificate_key {tmp}/key.pem;"),
]
for pat, rep in subs:
    conf, n = re.subn(pat, rep, conf)
    if n == 0:
        sys.exit(f"deploy/nginx.conf no longer contains {pat!r}: update tests/deploy/nginx_test.sh")
open(f"{tmp}/chat.conf", "w").write(conf)
import os
user = "user root;\n" if os.geteuid() == 0 else ""
# realip: a request from loopback with `X-Test-Client: ADDR` is treated as
# coming from ADDR, so the /metrics allow/deny list is tried with outside
# and private addresses while every packet stays on loopback.
open(f"{tmp}/nginx.conf", "w").write(f"""{user}worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    set_real_ip_from 127.0.0.0/8;
    real_ip_header X-Test-Client;
    client_body_temp_path {tmp}/tmp/body;
    proxy_temp_path {tmp}/tmp/proxy;
    fastcgi_temp_path {tmp}/tmp/fastcgi;
    uwsgi_temp_path {tmp}/tmp/uwsgi;
    scgi_temp_path {tmp}/tmp/scgi;
    include {tmp}/chat.conf;
}}
""")
PY
then ok "nginx config generated from deploy/nginx.conf"
else fail "generating the nginx config: $(cat "$tmp/gen.log")"; finish
fi

nginx_args=(-p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/error.log")
if timeout 20 "$NGINX" -t "${nginx_args[@]}" >"$tmp/nginx-t.log" 2>&1; then
    ok "nginx -t accepts the config"
else
    fail "nginx -t: $(cat "$tmp/nginx-t.log")"; finish
fi
"$NGINX" "${nginx_args[@]}" >"$tmp/nginx.out" 2>&1 &
nginx_pid=$!
if wait_port "$https" "$nginx_pid"; then ok "nginx listens on 127.0.0.1:$https (TLS)"; else fail "nginx did not start: $(cat "$tmp/nginx.out")"; finish; fi

# --- plain http redirects to https
if out=$(timeout 15 python3 - "$http" <<'PY' 2>&1
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request("GET", "/some/where?x=1", headers={"Host": "chat.example.com"})
r = c.getresponse()
loc = r.getheader("Location")
assert r.status == 301 and loc == "https://chat.example.com/some/where?x=1", (r.status, loc)
PY
); then ok "http:// redirects to https://"; else fail "http:// redirect: $out"; fi

# --- /metrics through TLS: loopback and private addresses only
if out=$(timeout 60 python3 - "$https" <<'PY' 2>&1
import http.client, ssl, sys
port = int(sys.argv[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def get(path, client=None):
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    headers = {"Host": "chat.example.com"}
    if client:
        headers["X-Test-Client"] = client
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body
bad = []
# From 127.0.0.1 itself: the metrics, as chat serves them.
status, body = get("/metrics")
if status != 200 or b"# TYPE chat_online gauge" not in body:
    bad.append(f"/metrics from 127.0.0.1: {status} {body[:80]!r}")
for client in ["127.0.0.2", "::1", "10.1.2.3", "172.16.0.1", "172.31.255.254",
               "192.168.1.1", "fc00::1", "fd12:3456::1"]:
    status, body = get("/metrics", client)
    if status != 200 or b"chat_online" not in body:
        bad.append(f"/metrics from {client}: {status}, want 200")
for client in ["203.0.113.7", "8.8.8.8", "11.0.0.1", "172.15.255.255", "172.32.0.1",
               "192.169.0.1", "2001:db8::1", "fe80::1", "::ffff:203.0.113.7"]:
    status, _ = get("/metrics", client)
    if status != 403:
        bad.append(f"/metrics from {client}: {status}, want 403")
# Spellings of the same path do not get past the guard.
for path in ["/metrics?x=1", "//metrics", "/%6Detrics", "/./metrics"]:
    status, _ = get(path, "203.0.113.7")
    if status != 403:
        bad.append(f"{path} from 203.0.113.7: {status}, want 403")
# Everything else stays public.
status, _ = get("/stats", "203.0.113.7")
if status != 200:
    bad.append(f"/stats from 203.0.113.7: {status}, want 200")
assert not bad, "; ".join(bad)
PY
); then ok "/metrics: 200 from loopback and private addresses, 403 from others"; else fail "/metrics access: $out"; fi

# --- through TLS: page, healthz, stats, echo, a chat session
timeout 120 python3 "$here/wss_check.py" 127.0.0.1 "$https" >"$tmp/wss.log" 2>&1
wss_rc=$?
cat "$tmp/wss.log"
n_ok=$(grep -c '^ok ' "$tmp/wss.log")
n_fail=$(grep -c '^FAIL ' "$tmp/wss.log")
passed=$((passed + n_ok))
failed=$((failed + n_fail))
if [ "$wss_rc" -ne 0 ] && [ "$n_fail" -eq 0 ]; then fail "wss_check.py exited $wss_rc"; fi
if [ "$n_ok" -eq 0 ] && [ "$n_fail" -eq 0 ]; then fail "wss_check.py ran no check"; fi

# --- client addresses behind nginx: 127.0.0.2 and 127.0.0.3 told apart
if out=$(timeout 60 python3 "$here/safety_check.py" 127.0.0.1 "$https" "$admin" "$tmp/admin-token" 2>&1); then
    ok "${out#ok   }"
else
    fail "safety_check.py: $out"
fi

# --- systemd unit
if command -v systemd-analyze >/dev/null; then
    # The unit's ExecStart binary (/usr/local/bin/chat) is not installed
    # here: verify a copy pointing at the binary under test.
    mkdir -p "$tmp/unit"
    sed "s#^ExecStart=/usr/local/bin/chat #ExecStart=$bin #" "$root/deploy/chat.service" >"$tmp/unit/chat.service"
    if timeout 30 systemd-analyze verify "$tmp/unit/chat.service" >"$tmp/verify.log" 2>&1; then
        ok "systemd-analyze verify deploy/chat.service"
    else
        fail "systemd-analyze verify deploy/chat.service: $(cat "$tmp/verify.log")"
    fi
else
    echo "skip systemd-analyze verify (systemd-analyze not installed)"
fi

finish
