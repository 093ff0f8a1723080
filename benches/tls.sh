#!/usr/bin/env bash
# wss benchmarks for BENCHMARKS.md ("TLS in the binary"): in one run,
#  1. wss echo (100 connections, 32 B, 16 in flight) against chat with
#     --tls-cert vs the same chat behind nginx terminating TLS with
#     deploy/nginx.conf's server block (1 worker): msgs/s, and msgs per
#     CPU-second of every server-side process (chat; chat + nginx);
#  2. RSS per idle connection at IDLE_CONNS open, wss vs plain ws;
#  3. full TLS handshakes (no resumption) per CPU-second of the server,
#     driven by parallel `openssl s_time -new`.
# Server processes pinned to SERVER_CPU, load to LOAD_CPU. Every figure the
# median of RUNS runs (min-max). Loopback only; every run bounded in time.
#
#   benches/tls.sh [CHAT_BINARY]      # default: target/release/chat
#
# Environment: RUNS=3 DURATION=10 SERVER_CPU=0 LOAD_CPU=1 IDLE_CONNS=15000
#              HANDSHAKE_SECS=10 HANDSHAKE_CLIENTS=2 ROWS="echo idle handshake"
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
chat_bin="${1:-$root/target/release/chat}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
IDLE_CONNS="${IDLE_CONNS:-15000}"
HANDSHAKE_SECS="${HANDSHAKE_SECS:-10}"
HANDSHAKE_CLIENTS="${HANDSHAKE_CLIENTS:-2}"
ROWS="${ROWS:-echo idle handshake}"
NGINX="${NGINX:-/usr/sbin/nginx}"
log() { echo "[tls-bench] $*" >&2; }

for tool in openssl python3 taskset "$NGINX"; do
    command -v "$tool" >/dev/null || { log "$tool not found"; exit 1; }
done
(cd "$root" && nice cargo build --release --quiet --locked -p chat-bench) || exit 1
bench="$root/target/release/chat-bench"
[ -x "$chat_bin" ] || { log "no chat binary at $chat_bin"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/chat-tls-bench.XXXXXX")
chmod 755 "$tmp"
mkdir -p "$tmp/tmp"
pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    pids=()
}
trap 'stop_all; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 || { log "openssl req failed"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}
# CPU ticks (user + system) of the given pids together.
ticks() {
    local sum=0 pid rest
    for pid in "$@"; do
        rest=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        set -- $rest
        sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
hz=$(getconf CLK_TCK)
metric() { # PORT SCHEME NAME
    python3 - "$@" <<'PY'
import http.client, ssl, sys
port, scheme, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
if scheme == "https":
    ctx = ssl._create_unverified_context()
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
else:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
c.request("GET", "/metrics")
for line in c.getresponse().read().decode().splitlines():
    if line.startswith(name + " "):
        print(line.split()[1]); break
PY
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "-"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%s (%s-%s)", m, a[1], a[NR]}'; }

start_chat() { # PORT ARGS... ; sets chat_pid
    local port=$1; shift
    taskset -c "$SERVER_CPU" "$chat_bin" --listen "127.0.0.1:$port" --rate-limit 1000000 "$@" \
        >>"$tmp/chat.log" 2>&1 &
    chat_pid=$!
    pids+=("$chat_pid")
    wait_port "$port" || { log "chat did not start"; exit 1; }
}

start_nginx() { # BACKEND_PORT HTTPS_PORT ; sets nginx_pids
    python3 - "$root/deploy/nginx.conf" "$tmp" "$1" "$2" "$(free_port)" <<'PY' || exit 1
import os, re, sys
src, tmp, back, https, http = sys.argv[1:]
conf = open(src).read()
for pat, rep in [
    (r"(?m)^(\s*)listen \[::\]:\d+[^;]*;\n", ""),
    (r"(?m)^(\s*)listen 443 ssl;", rf"\1listen 127.0.0.1:{https} ssl;"),
    (r"(?m)^(\s*)listen 80;", rf"\1listen 127.0.0.1:{http};"),
    (r"server 127\.0\.0\.1:10000;", f"server 127.0.0.1:{back};"),
    (r"(?m)^(\s*)ssl_certificate\s+\S+;", rf"\1ssl_certificate {tmp}/cert.pem;"),
    (r"(?m)^(\s*)ssl_certificate_key\s+\S+;", rf"\1ssl_certificate_key {tmp}/key.pem;"),
]:
    conf, n = re.subn(pat, rep, conf)
    if n == 0:
        sys.exit(f"deploy/nginx.conf no longer contains {pat!r}")
open(f"{tmp}/chat.conf", "w").write(conf)
user = "user root;\n" if os.geteuid() == 0 else ""
open(f"{tmp}/nginx.conf", "w").write(f"""{user}worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 40000; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/tmp/body;
    proxy_temp_path {tmp}/tmp/proxy;
    fastcgi_temp_path {tmp}/tmp/fastcgi;
    uwsgi_temp_path {tmp}/tmp/uwsgi;
    scgi_temp_path {tmp}/tmp/scgi;
    include {tmp}/chat.conf;
}}
""")
PY
    taskset -c "$SERVER_CPU" "$NGINX" -p "$tmp/" -c "$tmp/nginx.conf" -e "$tmp/error.log" &
    local master=$!
    pids+=("$master")
    wait_port "$2" || { log "nginx did not start"; exit 1; }
    nginx_pids="$master $(pgrep -P "$master" | tr '\n' ' ')"
}

# ------------------------------------------------------------ 1. wss echo
echo_run() { # URL METRICS_PORT METRICS_SCHEME PIDS... ; appends "msgs/s msgs/cpu-s" to $out
    local url=$1 mport=$2 mscheme=$3; shift 3
    local m0 c0 m1 c1 json rate
    m0=$(metric "$mport" "$mscheme" chat_echo_messages_total)
    c0=$(ticks "$@")
    json=$(taskset -c "$LOAD_CPU" "$bench" echo --url "$url" --connections 100 --size 32 \
        --in-flight 16 --duration "$DURATION" 2>>"$tmp/bench.log" | tail -n 1)
    c1=$(ticks "$@")
    m1=$(metric "$mport" "$mscheme" chat_echo_messages_total)
    rate=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["msgs_per_sec"])' "$json")
    python3 -c 'import sys; m,c,hz,r=map(float,sys.argv[1:]); print(r, round(m/(c/hz)))' \
        "$((m1 - m0))" "$((c1 - c0))" "$hz" "$rate"
}

if [[ " $ROWS " == *" echo "* ]]; then
    : >"$tmp/echo_tls" ; : >"$tmp/echo_nginx"
    for run in $(seq "$RUNS"); do
        p=$(free_port); start_chat "$p" --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
        r=$(echo_run "wss://127.0.0.1:$p/echo" "$p" https "$chat_pid"); echo "$r" >>"$tmp/echo_tls"
        log "run $run in-binary: $r"; stop_all
        back=$(free_port); start_chat "$back"; front=$(free_port); start_nginx "$back" "$front"
        r=$(echo_run "wss://127.0.0.1:$front/echo" "$back" http "$chat_pid" $nginx_pids); echo "$r" >>"$tmp/echo_nginx"
        log "run $run nginx+chat: $r"; stop_all
    done
    echo "| wss echo, 100 conns, 32 B, 16 in flight | msgs/s | msgs per server CPU-second |"
    echo "|---|---|---|"
    echo "| chat --tls-cert | $(cut -d' ' -f1 "$tmp/echo_tls" | median) | $(cut -d' ' -f2 "$tmp/echo_tls" | median) |"
    echo "| nginx (TLS) + chat | $(cut -d' ' -f1 "$tmp/echo_nginx" | median) | $(cut -d' ' -f2 "$tmp/echo_nginx" | median) |"
    paste -d' ' "$tmp/echo_tls" "$tmp/echo_nginx" | awk '{printf "%.2f\n", $2/$4}' >"$tmp/ratio"
    echo "| ratio (msgs per CPU-s, per run) | | $(median <"$tmp/ratio") |"
fi

# ------------------------------------------------------------ 2. idle RSS
idle_run() { # URL
    taskset -c "$LOAD_CPU" "$bench" idle --url "$1" --connections "$IDLE_CONNS" --pid "$chat_pid" \
        2>>"$tmp/bench.log" | tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["rss_per_conn"])'
}
if [[ " $ROWS " == *" idle "* ]]; then
    : >"$tmp/idle_tls"; : >"$tmp/idle_ws"
    for run in $(seq "$RUNS"); do
        p=$(free_port); start_chat "$p" --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
        idle_run "wss://127.0.0.1:$p/echo" >>"$tmp/idle_tls"; stop_all
        p=$(free_port); start_chat "$p"
        idle_run "ws://127.0.0.1:$p/echo" >>"$tmp/idle_ws"; stop_all
        log "run $run idle: wss $(tail -n1 "$tmp/idle_tls") B, ws $(tail -n1 "$tmp/idle_ws") B"
    done
    echo
    echo "| $IDLE_CONNS idle connections on /echo | RSS per connection (B) |"
    echo "|---|---|"
    echo "| wss (chat --tls-cert) | $(median <"$tmp/idle_tls") |"
    echo "| ws | $(median <"$tmp/idle_ws") |"
fi

# ------------------------------------------------------------ 3. handshakes
if [[ " $ROWS " == *" handshake "* ]]; then
    : >"$tmp/hs"
    for run in $(seq "$RUNS"); do
        p=$(free_port); start_chat "$p" --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
        h0=$(metric "$p" https chat_tls_handshakes_total); c0=$(ticks "$chat_pid"); t0=$(date +%s.%N)
        clients=()
        for _ in $(seq "$HANDSHAKE_CLIENTS"); do
            taskset -c "$LOAD_CPU" timeout $((HANDSHAKE_SECS + 20)) openssl s_time -connect "127.0.0.1:$p" \
                -new -time "$HANDSHAKE_SECS" >>"$tmp/s_time.log" 2>&1 &
            clients+=($!)
        done
        wait "${clients[@]}"
        t1=$(date +%s.%N); c1=$(ticks "$chat_pid"); h1=$(metric "$p" https chat_tls_handshakes_total)
        # h1 - h0 - 1: the first metric request's own handshake.
        r=$(python3 -c 'import sys; h,c,hz,t0,t1=map(float,sys.argv[1:]); print(round(h/(t1-t0)), round(h/(c/hz)))' \
            "$((h1 - h0 - 1))" "$((c1 - c0))" "$hz" "$t0" "$t1")
        echo "$r" >>"$tmp/hs"; log "run $run handshakes: $r (per s, per server CPU-s)"; stop_all
    done
    echo
    echo "| full TLS handshakes (ECDSA P-256, openssl s_time -new x$HANDSHAKE_CLIENTS) | per second | per server CPU-second |"
    echo "|---|---|---|"
    echo "| chat --tls-cert | $(cut -d' ' -f1 "$tmp/hs" | median) | $(cut -d' ' -f2 "$tmp/hs" | median) |"
fi
