#!/usr/bin/env bash
# Runs the browser test against a freshly started server binary:
#
#   tests/browser/run.sh path/to/chat
#
# Picks a free loopback port, starts the binary there, installs
# playwright-core (npm ci) if missing, runs chat.spec.mjs, stops the server.
# Needs Debian's chromium at /usr/bin/chromium (or $CHROMIUM).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 SERVER_BINARY" >&2; exit 2; }
bin=$1
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
[ -x "$bin" ] || { echo "run.sh: $bin is not an executable file" >&2; exit 2; }
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "run.sh: $chromium not found: apt-get install -y chromium" >&2; exit 1; }
if [ ! -d "$here/node_modules/playwright-core" ]; then
    (cd "$here" && timeout 300 npm ci --no-audit --no-fund) || { echo "run.sh: npm ci failed" >&2; exit 1; }
fi
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
log=$(mktemp)
"$bin" --listen "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for _ in $(seq 100); do
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "run.sh: server exited:"; cat "$log"; exit 1; }
    sleep 0.1
done
CHROMIUM=$chromium timeout 180 node "$here/chat.spec.mjs" "http://127.0.0.1:$port"
rc=$?
[ $rc -eq 0 ] || { echo "--- server log (last 20 lines)"; tail -n 20 "$log"; }
exit $rc
