#!/usr/bin/env bash
# The churn soak ("nothing lost under churn"): starts the server on a free
# loopback port, runs `chat-bench soak` against it with a fixed seed (chat
# and echo clients connecting, talking and leaving every way a network can),
# then stops the server with SIGTERM. Fails when the soak fails (a
# violation, /stats not back to 0/0/0, chat_open_connections not back to
# its start, VmRSS more than 10 % above its post-warm-up reading) or when
# the server does not exit 0. Every step is bounded in time.
#
#   tests/soak/run.sh [CHAT_BINARY] [CHAT_BENCH_BINARY]
#
# Defaults: target/release/chat and target/release/chat-bench.
# Environment (all optional):
#   DURATION=30    seconds of churn, warm-up (5 s) included
#   SEED=20261202  the soak's seed (a failure replays with the same one)
#   CLIENTS=200    clients at once
#   CHAT_ARGS=     extra server options, e.g. "--idle-timeout 2"
#   RSS_TOLERANCE=10  percent VmRSS may grow after the warm-up
#   OUT=target/soak  where server.log and soak.log go
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
chat=${1:-$root/target/release/chat}
bench=${2:-$root/target/release/chat-bench}
DURATION=${DURATION:-30}
SEED=${SEED:-20261202}
CLIENTS=${CLIENTS:-200}
CHAT_ARGS=${CHAT_ARGS:-}
RSS_TOLERANCE=${RSS_TOLERANCE:-10}
OUT=${OUT:-$root/target/soak}
mkdir -p "$OUT"
log=$OUT/server.log

for b in "$chat" "$bench"; do
  [ -x "$b" ] || { echo "soak: no executable $b"; exit 1; }
done

# shellcheck disable=SC2086 # CHAT_ARGS is a list of options
"$chat" --listen 127.0.0.1:0 $CHAT_ARGS >"$log" 2>&1 &
pid=$!
stop_server() {
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  # The server closes its sessions and exits within 5 s of SIGTERM.
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "soak: the server did not exit within 10 s of SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null
}
trap stop_server EXIT

# "chat listening on ADDR; open ..." names the port the kernel chose.
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/.*chat listening on \([^;]*\);.*/\1/p' "$log" | head -1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "soak: the server did not start"
  tail -20 "$log"
  exit 1
fi
echo "soak: server pid $pid on $addr${CHAT_ARGS:+ ($CHAT_ARGS)}"

# Churn, then at most 10 s for every client to leave and 15 s for the
# server's figures to settle: a minute on top of the churn bounds it all.
timeout -k 5 $((DURATION + 60)) "$bench" soak --url "ws://$addr/" \
  --duration "$DURATION" --seed "$SEED" --clients "$CLIENTS" \
  --server-pid "$pid" --rss-tolerance "$RSS_TOLERANCE" | tee "$OUT/soak.log"
soak=${PIPESTATUS[0]}

stop_server
wait "$pid" 2>/dev/null
server=$?
trap - EXIT
echo "soak: chat-bench exited $soak, the server $server (after SIGTERM)"
if [ "$soak" -ne 0 ] || [ "$server" -ne 0 ]; then
  echo "soak: FAILED; server log: $log"
  tail -5 "$log"
  exit 1
fi
