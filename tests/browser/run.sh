#!/usr/bin/env bash
# Runs the browser test against a freshly started server binary:
#
#   tests/browser/run.sh path/to/chat [--tls]
#
# Picks a free loopback port, starts the binary there, installs
# playwright-core (npm ci) if missing, runs chat.spec.mjs, stops the server.
# --tls: the server gets a certificate made here with openssl
# (--tls-cert/--tls-key) and the pages load over https:// (Chromium told to
# accept that certificate). Needs Debian's chromium at /usr/bin/chromium
# (or $CHROMIUM).
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
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
log=$(mktemp)
certs=$(mktemp -d)
scheme=http
args=()
if [ -n "$tls" ]; then
    timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$certs/key.pem" -out "$certs/cert.pem" -days 1 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 \
        || { echo "run.sh: openssl could not make a certificate" >&2; rm -rf "$certs"; exit 1; }
    args=(--tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem")
    scheme=https
fi
"$bin" --listen "127.0.0.1:$port" "${args[@]}" >"$log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$log"
    rm -rf "$certs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 100); do
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: server exited:"; cat "$log"; exit 1; }
    sleep 0.1
done
CHROMIUM=$chromium timeout 180 node "$here/chat.spec.mjs" "$scheme://127.0.0.1:$port"
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (last 20 lines)"; tail -n 20 "$log"; }
exit $rc
