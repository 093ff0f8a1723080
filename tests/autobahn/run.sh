#!/usr/bin/env bash
# Runs the Autobahn|Testsuite cases 1.* to 10.* (kosoku) against /echo of
# the given chat binary and judges the verdicts with check.py.
# Usage: tests/autobahn/run.sh path/to/chat [venv-dir] [--tls]
#
# --tls: chat gets a certificate made here (--tls-cert/--tls-key) and the
# cases run over wss. kosoku itself refuses wss:// URLs, so socat does the
# client's TLS: kosoku -> ws://127.0.0.1:FRONT -> socat -> TLS -> chat.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
venv=${2:-$here/../../target/venv}
tls=${3:-}
out=$here/../../target/autobahn${tls:+-tls}
if [ ! -x "$venv/bin/kosoku" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kosoku
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
certs=$(mktemp -d)
args=()
target=$port
socat_pid=
if [ -n "$tls" ]; then
  command -v socat >/dev/null || { echo "autobahn: socat not found (apt-get install -y socat)"; exit 1; }
  timeout 30 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$certs/key.pem" -out "$certs/cert.pem" -days 1 -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
  args=(--tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem")
  target=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  socat "TCP-LISTEN:$target,bind=127.0.0.1,fork,reuseaddr" \
    "OPENSSL:127.0.0.1:$port,verify=0,nodelay" 2>/dev/null &
  socat_pid=$!
fi
"$bin" --listen "127.0.0.1:$port" --max-message-size 16777216 "${args[@]}" >"$log" 2>&1 &
pid=$!
trap 'kill $pid $socat_pid 2>/dev/null || true; rm -rf "$log" "$certs"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
for _ in $(seq 100); do
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$target" 2>/dev/null && break
  sleep 0.1
done
rm -rf "$out"
# kosoku exits 1 whenever any case is not OK: judge from index.json instead.
timeout 1200 "$venv/bin/kosoku" -p 2 -x '12.*' -x '13.*' -o "$out" "ws://127.0.0.1:$target/echo" >"$out.log" 2>&1 || true
tail -3 "$out.log"
index=$(find "$out" -name index.json | head -1)
if [ -z "$index" ]; then
  echo "autobahn: no index.json produced"; cat "$out.log" | tail -20
  exit 1
fi
kill -0 $pid || { echo "autobahn: the server died"; cat "$log" | tail -20; exit 1; }
python3 "$here/check.py" "$index"
