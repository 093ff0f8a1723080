#!/usr/bin/env bash
# A cluster on one machine (issue 13): two chat nodes on one redis-server,
# chat-bench clients spread over both. Each run starts a fresh Redis (no
# persistence) and fresh nodes; RUNS runs per row, the table shows the
# median (min-max).
#
#   benches/cluster.sh [CHAT_BINARY]        # default target/release/chat
#
# Rows:
#   latency   10,000 clients at 1 msg/s, `--layout mixed`: every other pair
#             across the two nodes, the rest on one node, in the same run;
#             relay latency p50/p99 (kernel receive stamp) of each kind,
#             and Redis CPU per 1,000 cross-node messages at this light load.
#   pingpong  PAIRS pairs ping-ponging (one message in flight per pair), all
#             across nodes, then all on one node: relayed msgs/s over a
#             WINDOW-second steady window (chat_messages_relayed_total summed
#             over the nodes), and Redis CPU (utime+stime of redis-server)
#             per 1,000 cross-node messages (chat_cluster_messages_out_total).
#   pairing   10,000 clients arriving at once (chat-bench connects 256 at a
#             time), `--layout any`: pairs formed per second (connect +
#             handshake + pairing), against one node without Redis.
#
# Environment (optional): RUNS=3 WINDOW=10 PAIRS=1000 CLIENTS=10000
#   PORT=19700 ROWS="latency pingpong pairing" CONNECT_TIMEOUT=30
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
chat_bin="${1:-$root/target/release/chat}"
bench="$root/target/release/chat-bench"
RUNS="${RUNS:-3}"
WINDOW="${WINDOW:-10}"
PAIRS="${PAIRS:-1000}"
CLIENTS="${CLIENTS:-10000}"
PORT="${PORT:-19700}"
ROWS="${ROWS-latency pingpong pairing}"
# chat-bench's bound on connecting and pairing everyone (it waits that long
# if a client never hears its partner's hello).
CONNECT_TIMEOUT="${CONNECT_TIMEOUT:-30}"
tck=$(getconf CLK_TCK)
log() { echo "[cluster] $*" >&2; }

[ -x "$chat_bin" ] && [ -x "$bench" ] || {
    log "build first: cargo build --release --workspace"
    exit 1
}
command -v redis-server >/dev/null || {
    log "needs redis-server (apt-get install redis-server)"
    exit 1
}

metric() { # metric PORT NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
cpu_ticks() { # utime + stime of PID
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
wait_for() { # wait_for TRIES COMMAND...: until it succeeds, 0.1 s apart
    local n=$1
    shift
    for _ in $(seq "$n"); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

logs=$(mktemp -d /tmp/chat-cluster-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    pids=()
}
trap 'cleanup; rm -rf "$logs"' EXIT

# up [NODES]: a fresh Redis and NODES (default 2) nodes on it, or one node
# without Redis (NODES=0). Sets redis_pid, node_ports, node_pids.
up() {
    local nodes=${1:-2} cluster="bench$$-$PORT"
    node_ports=()
    node_pids=()
    redis_pid=
    if [ "$nodes" -gt 0 ]; then
        local rport=$((PORT++))
        redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir /tmp >/dev/null 2>&1 &
        redis_pid=$!
        pids+=("$redis_pid")
        wait_for 100 redis-cli -p "$rport" ping >/dev/null 2>&1 ||
            { log "redis did not start"; return 1; }
    fi
    local i
    for i in $(seq "$((nodes > 0 ? nodes : 1))"); do
        local port=$((PORT++)) cl=()
        [ "$nodes" -gt 0 ] && cl=(--redis "redis://127.0.0.1:$rport" --cluster "$cluster")
        (ulimit -n 40000 2>/dev/null
         exec "$chat_bin" --listen "127.0.0.1:$port" "${cl[@]}" --rate-limit 1000000 \
            --idle-timeout 600 --interest-wait 600) >/dev/null 2>"$logs/node-$port.log" &
        pids+=("$!")
        node_pids+=("$!")
        node_ports+=("$port")
        wait_for 100 curl -sf "http://127.0.0.1:$port/healthz" -o /dev/null ||
            { log "node $port did not start"; return 1; }
    done
    if [ "$nodes" -gt 0 ]; then
        for port in "${node_ports[@]}"; do
            wait_for 150 sees "$port" "$nodes" || {
                log "node $port never saw $nodes nodes:"
                tail -n 5 "$logs"/node-*.log >&2
                return 1
            }
        done
    fi
}

targets() { local t=() p; for p in "${node_ports[@]}"; do t+=("ws://127.0.0.1:$p/"); done; (IFS=,; echo "${t[*]}"); }
sum_metric() { local s=0 p v; for p in "${node_ports[@]}"; do v=$(metric "$p" "$1"); s=$((s + ${v:-0})); done; echo "$s"; }
sees() { test "$(metric "$1" chat_cluster_nodes)" = "$2"; }  # node PORT sees N nodes
all_chatting() { curl -s "http://127.0.0.1:${node_ports[0]}/stats" | grep -q "\"chatting\":$CLIENTS[,}]"; }
flowing() { test "$(sum_metric chat_messages_relayed_total)" -gt "$1"; }
json() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

# latency -> "across_p50 across_p99 local_p50 local_p99 unplanned
#             redis_cpu_ms_per_1000_cross" (µs; Redis CPU over the middle
#             of chat-bench's window, messages mostly one per PUBLISH)
latency() {
    trap cleanup EXIT # a subshell of $(...): its own trap
    up 2 || return 1
    local out="$logs/latency.json" load
    (ulimit -n 40000 2>/dev/null
     exec timeout 300 "$bench" chat --targets "$(targets)" --layout mixed \
        --clients "$CLIENTS" --rate 1 --duration "$WINDOW" --sources 100 \
        --connect-timeout "$CONNECT_TIMEOUT") >"$out" 2>&1 &
    load=$!
    # Measured once everyone is paired (no joins left in Redis's figure).
    wait_for 1800 all_chatting
    sleep 1
    local x0 r0 x1 r1
    x0=$(sum_metric chat_cluster_messages_out_total); r0=$(cpu_ticks "$redis_pid")
    sleep "$((WINDOW > 4 ? WINDOW - 3 : 1))"
    x1=$(sum_metric chat_cluster_messages_out_total); r1=$(cpu_ticks "$redis_pid")
    wait "$load"
    cleanup
    local redis_ms
    redis_ms=$(awk -v x="$((x1 - x0))" -v r="$((r1 - r0))" -v tck="$tck" \
        'BEGIN { printf "%.2f", (x > 0 ? (r / tck * 1000) / (x / 1000) : 0) }')
    json '"%s %s %s %s %s" % (d["across"]["socket_latency_us"]["p50"], d["across"]["socket_latency_us"]["p99"], d["local"]["socket_latency_us"]["p50"], d["local"]["socket_latency_us"]["p99"], d["unplanned"])' <"$out" |
        sed "s/\$/ $redis_ms/"
}

# pingpong LAYOUT -> "msgs_per_s redis_cpu_ms_per_1000_cross cross_msgs_per_s"
pingpong() {
    trap cleanup EXIT # a subshell of $(...): its own trap
    local layout=$1
    up 2 || return 1
    local dur=$((WINDOW + 40))
    (ulimit -n 40000 2>/dev/null
     exec timeout $((dur + 60)) "$bench" chat --targets "$(targets)" --layout "$layout" \
        --clients $((PAIRS * 2)) --ping-pong --duration "$dur" --connect-timeout 120) \
        >/dev/null 2>&1 &
    local load=$!
    wait_for 600 flowing 20000
    sleep 1
    local m0 x0 r0 w0 m1 x1 r1 w1
    m0=$(sum_metric chat_messages_relayed_total); x0=$(sum_metric chat_cluster_messages_out_total)
    r0=$(cpu_ticks "$redis_pid"); w0=$(date +%s.%N)
    sleep "$WINDOW"
    m1=$(sum_metric chat_messages_relayed_total); x1=$(sum_metric chat_cluster_messages_out_total)
    r1=$(cpu_ticks "$redis_pid"); w1=$(date +%s.%N)
    kill "$load" 2>/dev/null; wait "$load" 2>/dev/null
    cleanup
    awk -v m="$((m1 - m0))" -v x="$((x1 - x0))" -v r="$((r1 - r0))" -v tck="$tck" \
        -v w0="$w0" -v w1="$w1" 'BEGIN {
        wall = w1 - w0
        printf "%.0f %.2f %.0f\n", m / wall, (x > 0 ? (r / tck * 1000) / (x / 1000) : 0), x / wall
    }'
}

# pairing NODES -> "pairs_per_s all_paired redis_cpu_us_per_pair" (Redis
#                  CPU from before the first connect until /stats counts
#                  every client chatting: joins, offers, accepts, hellos)
pairing() {
    trap cleanup EXIT # a subshell of $(...): its own trap
    up "$1" || return 1
    local out="$logs/pairing.json" r0=0 r1=0 load
    [ -n "$redis_pid" ] && r0=$(cpu_ticks "$redis_pid")
    (ulimit -n 40000 2>/dev/null
     exec timeout 300 "$bench" chat --targets "$(targets)" --layout any \
        --clients "$CLIENTS" --rate 1 --duration 1 --sources 100 \
        --connect-timeout "$CONNECT_TIMEOUT") >"$out" 2>&1 &
    load=$!
    wait_for 1800 all_chatting
    [ -n "$redis_pid" ] && r1=$(cpu_ticks "$redis_pid")
    wait "$load"
    cleanup
    local per_pair
    per_pair=$(awk -v r="$((r1 - r0))" -v tck="$tck" -v n="$((CLIENTS / 2))" \
        'BEGIN { printf "%.1f", r / tck * 1e6 / n }')
    json '"%s %s" % (d["pairs_per_sec"], d["all_paired"])' <"$out" | sed "s/\$/ $per_pair/"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%s (%s-%s)", a[int((NR + 1) / 2)], a[1], a[NR] }'; }
col() { printf '%s\n' "${results[@]}" | awk -v c="$1" '{ print $c }' | median; }

for row in $ROWS; do
    case $row in
    latency)
        results=()
        for i in $(seq "$RUNS"); do
            r=$(latency); log "latency run $i: $r"; results+=("$r")
        done
        echo "| $CLIENTS clients at 1 msg/s, 2 nodes | p50 (µs) | p99 (µs) |"
        echo "|---|---|---|"
        echo "| pairs across nodes | $(col 1) | $(col 2) |"
        echo "| pairs on one node (same runs) | $(col 3) | $(col 4) |"
        echo "(clients paired other than planned: $(col 5); Redis CPU per 1,000 cross-node messages at this rate: $(col 6) ms)"
        echo
        ;;
    pingpong)
        echo "| $PAIRS pairs ping-ponging, 2 nodes | relayed msgs/s | Redis CPU ms per 1,000 cross-node msgs | cross-node msgs/s |"
        echo "|---|---|---|---|"
        for layout in across local; do
            results=()
            for i in $(seq "$RUNS"); do
                r=$(pingpong "$layout"); log "pingpong $layout run $i: $r"; results+=("$r")
            done
            echo "| $layout | $(col 1) | $(col 2) | $(col 3) |"
        done
        echo
        ;;
    pairing)
        echo "| $CLIENTS clients at once | pairs/s (connect + handshake + pairing) | Redis CPU µs per pair |"
        echo "|---|---|---|"
        for nodes in 2 0; do
            results=()
            for i in $(seq "$RUNS"); do
                r=$(pairing "$nodes"); log "pairing nodes=$nodes run $i: $r"; results+=("$r")
            done
            name=$([ "$nodes" = 0 ] && echo "one node, no Redis" || echo "2 nodes + Redis")
            echo "| $name | $(col 1) | $(col 3) |"
        done
        echo
        ;;
    esac
done
