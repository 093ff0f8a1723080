#!/usr/bin/env bash
# Runs the Autobahn|Testsuite cases 1.* to 10.* (kosoku) against /echo of
# the given chat binary and judges the verdicts with check.py.
# Usage: tests/autobahn/run.sh path/to/chat [venv-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
venv=${2:-$here/../../target/venv}
out=$here/../../target/autobahn
if [ ! -x "$venv/bin/kosoku" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kosoku
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin" --listen "127.0.0.1:$port" --max-message-size 16777216 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
rm -rf "$out"
# kosoku exits 1 whenever any case is not OK: judge from index.json instead.
timeout 1200 "$venv/bin/kosoku" -p 2 -x '12.*' -x '13.*' -o "$out" "ws://127.0.0.1:$port/echo" >"$out.log" 2>&1 || true
tail -3 "$out.log"
index=$(find "$out" -name index.json | head -1)
if [ -z "$index" ]; then
  echo "autobahn: no index.json produced"; cat "$out.log" | tail -20
  exit 1
fi
kill -0 $pid || { echo "autobahn: the server died"; cat "$log" | tail -20; exit 1; }
python3 "$here/check.py" "$index"
