#!/usr/bin/env bash
# --threads 1 vs --threads 2 on this machine: work per server CPU-second.
#
# The server runs on `taskset -c 0,1` (both cores; chat-bench shares them,
# so raw throughput says little and messages per server CPU-second says
# what a core buys). For each row and thread count, RUNS runs; each run:
# start the server, start the load, wait for it to flow, then over a
# WINDOW-second steady-state window read the server's CPU (utime+stime from
# /proc/PID/stat) and its message counter from /metrics at both ends.
#
#   benches/threads.sh [CHAT_BINARY]        # default target/release/chat
#
# Environment (optional):
#   RUNS=3         runs per cell (the table shows the median, min-max)
#   WINDOW=8       seconds measured per run
#   THREADS="1 2"  thread counts compared
#   ROWS="echo same half cross"
#   PAIRS=1000     ping-pong pairs in the relay rows
#   PORT=19500
#   LOAD_NICE=-10  the load tool's nice value in the throughput rows (0: the
#                  same priority as the server). The load tool needs one of
#                  the two cores; at equal priority a second server loop
#                  preempts it whenever a message wakes that loop, and both
#                  sides then context-switch some 40x as often (measured,
#                  BENCHMARKS.md "Giving the load tool its core"). Clients
#                  on other machines, as in a deployment, cost the server
#                  no such thing. Needs root for a negative value.
#   IDLE=1 IDLE_CONNS="15000 10000"   the idle rows: RSS per idle WebSocket
#                  (chat-bench idle) and how SO_REUSEPORT spread them
# Rows:
#   echo      chat-bench echo: 100 connections, 32 B, 16 in flight
#   same      chat-bench chat --ping-pong --cross-loops 0: PAIRS pairs, one
#             message in flight per pair, every pair within one loop
#   cross     the same with --cross-loops 1: every pair spans two loops
#   half      --cross-loops 0.5: half of the pairs span two loops (the
#             issue's "1,000 pairs ping-ponging, half of them across threads")
#             chat-bench learns each client's loop from /metrics as it
#             connects (tools/chat-bench/src/chat/placed.rs) and pairs them
#             by interest tags; with one loop every pair is within it. The
#             "cross" column is the share of relays that crossed loops (a
#             cross pair's round trip is longer, so in "half" it is below
#             one half).
# For each row the thread counts alternate run by run (1, 2, 1, 2...), so
# the machine's load drifts over both alike.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
chat_bin="${1:-$root/target/release/chat}"
bench="$root/target/release/chat-bench"
RUNS="${RUNS:-3}"
WINDOW="${WINDOW:-8}"
THREADS="${THREADS:-1 2}"
ROWS="${ROWS-echo same half cross}"
PAIRS="${PAIRS:-1000}"
PORT="${PORT:-19500}"
LOAD_NICE="${LOAD_NICE:--10}"
tck=$(getconf CLK_TCK)
log() { echo "[threads] $*" >&2; }

[ -x "$chat_bin" ] && [ -x "$bench" ] || {
    log "build first: cargo build --release --workspace"
    exit 1
}

metric() { # metric PORT NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
cpu_ticks() { # utime + stime of PID
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# run ROW THREADS -> prints "msgs_per_s msgs_per_cpu_s cpu_share cross_share"
run() {
    local row=$1 threads=$2 port=$((PORT++)) counter load_pid
    (ulimit -n 20000 2>/dev/null
     exec taskset -c 0,1 "$chat_bin" --listen "127.0.0.1:$port" --threads "$threads" \
        --rate-limit 1000000 --idle-timeout 600 --interest-wait 600) >/dev/null 2>&1 &
    local server=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    local dur=$((WINDOW + 30))
    case $row in
        echo)
            counter=chat_echo_messages_total
            nice -n "$LOAD_NICE" timeout $((dur + 30)) "$bench" echo --url "ws://127.0.0.1:$port/echo" \
                --connections 100 --size 32 --in-flight 16 --duration "$dur" \
                >/dev/null 2>&1 &
            ;;
        same | half | cross)
            local share
            case $row in same) share=0 ;; half) share=0.5 ;; cross) share=1 ;; esac
            counter=chat_messages_relayed_total
            (ulimit -n 20000 2>/dev/null
             exec nice -n "$LOAD_NICE" timeout $((dur + 150)) "$bench" chat --url "ws://127.0.0.1:$port/" \
                --clients $((PAIRS * 2)) --ping-pong --duration "$dur" \
                --cross-loops "$share" --connect-timeout 120) >/dev/null 2>&1 &
            ;;
    esac
    load_pid=$!
    # Flowing: the counter moves.
    local c0=0
    for _ in $(seq 1500); do
        c0=$(metric "$port" "$counter")
        [ "${c0:-0}" -gt 1000 ] && break
        sleep 0.1
    done
    sleep 1
    local m0 t0 x0 r0 w0 m1 t1 x1 r1 w1
    m0=$(metric "$port" "$counter"); x0=$(metric "$port" chat_cross_thread_relays_total)
    r0=$(metric "$port" chat_messages_relayed_total)
    t0=$(cpu_ticks "$server"); w0=$(date +%s.%N)
    sleep "$WINDOW"
    m1=$(metric "$port" "$counter"); x1=$(metric "$port" chat_cross_thread_relays_total)
    r1=$(metric "$port" chat_messages_relayed_total)
    t1=$(cpu_ticks "$server"); w1=$(date +%s.%N)
    kill "$load_pid" 2>/dev/null; wait "$load_pid" 2>/dev/null
    kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null
    awk -v m="$((m1 - m0))" -v t="$((t1 - t0))" -v tck="$tck" -v w0="$w0" -v w1="$w1" \
        -v x="$((x1 - x0))" -v r="$((r1 - r0))" 'BEGIN {
        wall = w1 - w0; cpu = t / tck;
        printf "%.0f %.0f %.2f %.2f\n", m / wall, (cpu > 0 ? m / cpu : 0), cpu / wall, (r > 0 ? x / r : 0)
    }'
}

# idle THREADS CONNS -> prints "rss_per_conn spread" (spread: connections
# per loop from chat_loop_open_connections, read while they are held)
idle() {
    local threads=$1 conns=$2 port=$((PORT++))
    (ulimit -n 40000 2>/dev/null
     exec taskset -c 0,1 "$chat_bin" --listen "127.0.0.1:$port" --threads "$threads" \
        --idle-timeout 600) >/dev/null 2>&1 &
    local server=$! out
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    out=$(mktemp)
    (ulimit -n 40000 2>/dev/null
     exec timeout 300 "$bench" idle --url "ws://127.0.0.1:$port/echo" --connections "$conns" \
        --pid "$server" --hold 10 --sources 100) >"$out" 2>&1 &
    local load=$!
    for _ in $(seq 600); do
        [ "$(metric "$port" chat_open_connections)" -ge "$conns" ] 2>/dev/null && break
        sleep 0.1
    done
    local spread
    spread=$(curl -s "http://127.0.0.1:$port/metrics" |
        awk '/^chat_loop_open_connections/ { printf "%s%s", sep, $2; sep = "/" }')
    wait "$load"
    kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null
    local per
    per=$(sed -n 's/.*"rss_per_conn":\([0-9.]*\).*/\1/p' "$out")
    rm -f "$out"
    echo "${per:-?} ${spread:-1 loop}"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.0f (%.0f-%.0f)", a[int((NR + 1) / 2)], a[1], a[NR] }'; }

if [ "${IDLE:-1}" = 1 ]; then
    echo "| idle connections | threads | RSS per idle connection (B) | connections per loop |"
    echo "|---|---|---|---|"
    for conns in ${IDLE_CONNS:-15000 10000}; do
        for threads in $THREADS; do
            for i in $(seq "$RUNS"); do
                r=$(idle "$threads" "$conns")
                log "idle $conns threads=$threads run $i: $r"
                echo "| $conns | $threads | ${r% *} | ${r#* } |"
            done
        done
    done
    echo
fi
col() { awk -v c="$1" 'NF { print $c }'; }
mid() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# Two ratios against the first thread count: of the medians, and the
# median of each run's own ratio (run i of both ran back to back, so the
# machine's drift over the minutes cancels out of it).
echo "| row | threads | msgs/s | msgs per server CPU-s | server CPU (cores) | cross-loop relays | per CPU-s vs the first: medians, run by run |"
echo "|---|---|---|---|---|---|---|"
declare -A results
for row in $ROWS; do
    for i in $(seq "$RUNS"); do
        for threads in $THREADS; do
            r=$(run "$row" "$threads")
            log "$row threads=$threads run $i: $r"
            results["$row $threads"]+="$r"$'\n'
        done
    done
    base= base_runs=
    for threads in $THREADS; do
        runs=${results["$row $threads"]}
        per_cpu=$(printf '%s' "$runs" | col 2 | mid)
        base=${base:-$per_cpu}
        base_runs=${base_runs:-$runs}
        ratio=$(awk -v a="$per_cpu" -v b="$base" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        paired=$(paste <(printf '%s' "$runs" | col 2) <(printf '%s' "$base_runs" | col 2) |
            awk '$2 > 0 { print $1 / $2 }' | mid)
        echo "| $row | $threads | $(printf '%s' "$runs" | col 1 | median) |" \
            "$(printf '%s' "$runs" | col 2 | median) | $(printf '%s' "$runs" | col 3 | mid) |" \
            "$(printf '%s' "$runs" | col 4 | mid) | ${ratio}x, $(printf '%.2f' "${paired:-0}")x |"
    done
done
