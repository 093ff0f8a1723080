#!/usr/bin/env bash
# Runs the browser test against a freshly started server binary:
#
#   tests/browser/run.sh path/to/chat [--tls]
#
# Picks a free loopback port, starts the binary there, installs
# playwright-core (npm ci) if missing, runs chat.spec.mjs, stops the server;
# then the same with the safety options for safety.spec.mjs.
# --tls: the server gets a certificate made here with openssl
# (--tls-cert/--tls-key) and chat.spec.mjs loads the page over https://
# (Chromium told to accept that certificate); safety.spec.mjs, which does not
# depend on the transport, runs only without --tls.
# Needs Debian's chromium at /usr/bin/chromium (or $CHROMIUM).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 SERVER_BINARY [--tls]" >&2; exit 2; }
bin=$1
tls=${2:-}
[ -z "$tls" ] || [ "$tls" = --tls ] || { echo "usage: $0 SERVER_BINARY [--tls]" >&2; exit 2; }
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
[ -x "$bin" ] || { echo "run.sh: $bin is not an executable file" >&2; exit 2; }
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "run.sh: $chromium not found: apt-get install -y chromium" >&2; exit 1; }
if [ ! -d "$here/node_modules/playwright-core" ]; then
    (cd "$here" && timeout 300 npm ci --no-audit --no-fund) || { echo "run.sh: npm ci failed" >&2; exit 1; }
fi
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
tmp=$(mktemp -d)
log=$tmp/server.log
pid=
stop_server() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=
}
cleanup() { stop_server; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
# start_server PORT ARGS...: the binary on 127.0.0.1:PORT, until it accepts.
start_server() {
    local p=$1; shift
    "$bin" --listen "127.0.0.1:$p" "$@" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { echo "run.sh: server exited:"; cat "$log"; exit 1; }
        sleep 0.1
    done
    echo "run.sh: server did not listen on $p"; exit 1
}

# 1. The chat page: two strangers talk.
scheme=http
args=()
if [ -n "$tls" ]; then
    timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 1 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 \
        || { echo "run.sh: openssl could not make a certificate" >&2; exit 1; }
    args=(--tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem")
    scheme=https
fi
port=$(free_port)
start_server "$port" "${args[@]}"
CHROMIUM=$chromium timeout 180 node "$here/chat.spec.mjs" "$scheme://127.0.0.1:$port"
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (last 20 lines)"; tail -n 20 "$log"; }
stop_server
[ -z "$tls" ] || exit $rc

# 2. Safety: the 18+ notice with the operator's rules, report, block, banned.
port=$(free_port) admin=$(free_port)
token=browser-test-token
(umask 077 && echo "$token" >"$tmp/token")
printf 'Test rules: be excellent to each other.\nNo spam.\n' >"$tmp/rules"
start_server "$port" --trust-proxy 127.0.0.1 --rules-file "$tmp/rules" \
    --admin-listen "127.0.0.1:$admin" --admin-token-file "$tmp/token"
CHROMIUM=$chromium timeout 180 node "$here/safety.spec.mjs" "http://127.0.0.1:$port" "http://127.0.0.1:$admin" "$token"
rc2=$?
[ $rc2 -eq 0 ] || { echo "--- server log (last 20 lines)"; tail -n 20 "$log"; }
[ $rc -eq 0 ] && [ $rc2 -eq 0 ]
