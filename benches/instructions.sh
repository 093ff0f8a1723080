#!/usr/bin/env bash
# User-space instructions per echoed message, counted by callgrind: the
# server runs under `valgrind --tool=callgrind` while chat-bench echo drives
# it (100 connections, 16 in flight, 32-byte text messages by default);
# total Ir of the server process divided by the messages it echoed (its own
# chat_echo_messages_total, so handshakes, warm-up and shutdown are spread
# over them as in BENCHMARKS.md). Instruction counts do not depend on the
# machine's noise, only on the code (and, a little, on how reads batch).
#
#   benches/instructions.sh [CHAT_BINARY]   # default: target/release/chat
#
# Environment (all optional):
#   DURATION=5      seconds of measured load (after 1 s of warm-up)
#   CONNECTIONS=100 IN_FLIGHT=16 SIZE=32   the chat-bench echo load
#   CHAT_ARGS=""    extra server arguments (e.g. "--deflate off")
#   TOP=15          functions listed (self cost, callgrind_annotate)
#   OUT=reports/instructions-DATE   where callgrind.out and logs go
# The server under callgrind runs ~50x slower: the load is bounded by
# DURATION and every wait below by a timeout.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
chat_bin="${1:-$root/target/release/chat}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-100}"
IN_FLIGHT="${IN_FLIGHT:-16}"
SIZE="${SIZE:-32}"
CHAT_ARGS="${CHAT_ARGS:-}"
TOP="${TOP:-15}"
OUT="${OUT:-$root/reports/instructions-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

if ! command -v valgrind >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >&2
fi
(cd "$root" && nice cargo build --release --quiet --locked -p chat-bench)
[ "$chat_bin" != "$root/target/release/chat" ] || (cd "$root" && nice cargo build --release --quiet --locked -p chat)
bench="$root/target/release/chat-bench"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    "$chat_bin" --listen "127.0.0.1:$port" --rate-limit 1000000 $CHAT_ARGS \
    >"$OUT/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    grep -q "listening on" "$OUT/server.log" && break
    sleep 0.1
done
grep -q "listening on" "$OUT/server.log" || { echo "server did not start"; tail "$OUT/server.log"; exit 1; }

timeout $((DURATION + 120)) "$bench" echo --url "ws://127.0.0.1:$port/echo" \
    --connections "$CONNECTIONS" --in-flight "$IN_FLIGHT" --size "$SIZE" \
    --duration "$DURATION" --warmup 1 --connect-timeout 60 >"$OUT/bench.log" 2>&1 || true
echoed=$(curl -s --max-time 60 "http://127.0.0.1:$port/metrics" |
    awk '$1 == "chat_echo_messages_total" { print $2 }')
# SIGTERM: graceful shutdown; callgrind writes its counts at exit.
kill -TERM $pid
for _ in $(seq 600); do
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
trap - EXIT
total=$(awk '/^(summary|totals):/ { print $2; exit }' "$OUT/callgrind.out")
if [ -z "${echoed:-}" ] || [ "${echoed:-0}" = 0 ] || [ -z "$total" ]; then
    echo "no result: echoed=${echoed:-?} total=${total:-?}"; tail "$OUT/bench.log"; exit 1
fi
callgrind_annotate --inclusive=no "$OUT/callgrind.out" 2>/dev/null |
    awk -v top="$TOP" '/^-+$/ { sep++ ; next } sep >= 3 && NF && shown < top { print; shown++ }' \
    >"$OUT/top.txt" || true
echo "load: $CONNECTIONS connections, $IN_FLIGHT in flight, $SIZE-byte text, ${DURATION}s (+1s warm-up) $CHAT_ARGS"
echo "server: $total instructions (Ir), $echoed messages echoed"
echo "Ir per echoed message: $(( total / echoed ))"
echo "top functions (self Ir over the whole run):"
cat "$OUT/top.txt"
