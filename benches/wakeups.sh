#!/usr/bin/env bash
# Where a server loop's CPU goes besides the messages: context switches,
# epoll_wait calls and reads per echoed message, from `perf stat` over 5 s
# of the echo row of benches/threads.sh (100 connections, 32 B, 16 in
# flight; server on `taskset -c 0,1`, chat-bench sharing the two cores).
#
#   benches/wakeups.sh THREADS [LOAD_NICE] [CHAT_BINARY]
#
# LOAD_NICE (default 0) is chat-bench's nice value: -10 gives the load
# tool its core, as benches/threads.sh does by default. Needs root (perf
# tracepoints, negative nice). Prints the perf figures, the echoes in the
# window and the server CPU per echo.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
threads="${1:?usage: benches/wakeups.sh THREADS [LOAD_NICE] [CHAT_BINARY]}"
load_nice="${2:-0}"
chat_bin="${3:-$root/target/release/chat}"
bench="$root/target/release/chat-bench"
port=$((20000 + RANDOM % 10000))

metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }

taskset -c 0,1 "$chat_bin" --listen "127.0.0.1:$port" --threads "$threads" \
    --rate-limit 1000000 --idle-timeout 600 >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
nice -n "$load_nice" "$bench" echo --url "ws://127.0.0.1:$port/echo" --connections 100 \
    --size 32 --in-flight 16 --duration 12 >/dev/null 2>&1 &
load=$!
sleep 3
m0=$(metric chat_echo_messages_total)
out=$(perf stat -x, -e context-switches,cpu-clock,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto \
    -p "$server" -- sleep 5 2>&1 >/dev/null)
m1=$(metric chat_echo_messages_total)
wait "$load"
kill -TERM "$server"; wait "$server"
echo "$out" | awk -F, -v m="$((m1 - m0))" -v t="$threads" -v n="$load_nice" '
    { v[$3] = $1 }
    END {
        printf "threads %s, load nice %s: %d echoes in 5 s; context switches %d, epoll_wait %d, recvfrom %d, sendto %d; server CPU %.0f ms = %.0f ns per echo, %.1f echoes per read, %.1f reads per epoll_wait\n",
            t, n, m, v["context-switches"], v["syscalls:sys_enter_epoll_wait"],
            v["syscalls:sys_enter_recvfrom"], v["syscalls:sys_enter_sendto"], v["cpu-clock"],
            v["cpu-clock"] * 1e6 / m, m / v["syscalls:sys_enter_recvfrom"],
            v["syscalls:sys_enter_recvfrom"] / v["syscalls:sys_enter_epoll_wait"]
    }'
