#!/usr/bin/env bash
# Reproduces the table of BENCHMARKS.md on this machine: chat against the
# peers that build from crates.io/Debian (tokio-tungstenite, fastwebsockets,
# nginx), server pinned to one core and load to the other, every figure the
# median of RUNS runs with min–max. Loopback only; every run bounded in time.
#
#   benches/run.sh [CHAT_BINARY]          # default: target/release/chat
#
# Environment (all optional):
#   RUNS=3            runs per cell (median, min–max)
#   DURATION=10       seconds per load run (wrk -d, chat-bench --duration)
#   SERVER_CPU=0      core for the server (taskset -c)
#   LOAD_CPU=1        core for the load generator
#   IDLE_CONNS=15000  connections for the idle-RSS row
#   IDLE_ARGS=""      extra chat-bench idle arguments (--offer-deflate: the
#                     idle sessions negotiate permessage-deflate)
#   CHAT_CLIENTS=10000  clients for the 1 msg/s relay-latency row
#   PINGPONG_PAIRS=1000 pairs for the ping-pong row
#   SERVERS="chat tokio-tungstenite fastwebsockets nginx"   columns to run
#   ROWS="echo16 echo1 idle http http16 ab pingpong relay relay_e2e relay_steal relay_busy floor floor_busy"
#                     rows to run (relay_e2e and relay_steal read relay's runs;
#                     floor rows run chat-bench wake-floor, no server)
#   BUSY_POLL=200us   chat's --busy-poll in relay_busy (and the floor's)
#   CHAT_ARGS="--rate-limit 1000000"   extra arguments for the chat server
#   OUT=reports/bench-DATE   where logs and results.tsv go
#   PORT_BASE=19300   first port tried (each server start takes the next free one)
#
# Prints the markdown table on stdout (and saves it as $OUT/table.md).
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
chat_bin="${1:-$root/target/release/chat}"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10}"
SERVER_CPU="${SERVER_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
IDLE_CONNS="${IDLE_CONNS:-15000}"
IDLE_ARGS="${IDLE_ARGS:-}"
CHAT_CLIENTS="${CHAT_CLIENTS:-10000}"
PINGPONG_PAIRS="${PINGPONG_PAIRS:-1000}"
SERVERS="${SERVERS:-chat tokio-tungstenite fastwebsockets nginx}"
ROWS="${ROWS:-echo16 echo1 idle http http16 ab pingpong relay relay_e2e relay_steal relay_busy floor floor_busy}"
BUSY_POLL="${BUSY_POLL:-200us}"
# The chat rate limit (10/s per client) would measure the limit, not the
# server: benchmarks raise it. The 1 msg/s relay row stays under it anyway.
CHAT_ARGS="${CHAT_ARGS:---rate-limit 1000000}"
OUT="${OUT:-$root/reports/bench-$(date +%Y%m%d-%H%M%S)}"
next_port="${PORT_BASE:-19300}"

mkdir -p "$OUT"
results="$OUT/results.tsv"
: >"$results"
log() { echo "[bench] $*" >&2; }

# ------------------------------------------------------------------ tools

need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v ab >/dev/null || need_pkgs+=(apache2-utils)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need_pkgs+=(nginx)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

log "building chat-bench and the peers (release)"
(cd "$root" && nice cargo build --release --quiet --locked -p chat-bench) || exit 1
bench="$root/target/release/chat-bench"
declare -A peer_bin
for p in tokio-tungstenite fastwebsockets; do
    case " $SERVERS " in *" $p "*) ;; *) continue ;; esac
    manifest="$here/peers/$p-echo/Cargo.toml"
    if nice cargo build --release --quiet --locked --manifest-path "$manifest"; then
        peer_bin[$p]="$here/peers/$p-echo/target/release/$p-echo"
    else
        log "$p did not build; its column stays empty"
    fi
done
if [ ! -x "$chat_bin" ]; then
    log "no chat binary at $chat_bin; its column stays empty"
fi

# ------------------------------------------------------------------ servers

server_pid=""
nginx_dir=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
}
trap cleanup EXIT INT TERM

free_port() {
    while (exec 3<>"/dev/tcp/127.0.0.1/$next_port") 2>/dev/null; do
        next_port=$((next_port + 1))
    done
    port=$next_port
    next_port=$((next_port + 1))
}

# start_server NAME: starts a fresh server pinned to SERVER_CPU; sets
# server_pid and port. Returns non-zero when it cannot run here.
start_server() {
    local name="$1" logf="$OUT/server-$1.log"
    free_port
    case "$name" in
    chat)
        [ -x "$chat_bin" ] || return 1
        # shellcheck disable=SC2086
        (ulimit -n 20000 2>/dev/null; exec taskset -c "$SERVER_CPU" "$chat_bin" \
            --listen "127.0.0.1:$port" $CHAT_ARGS) >>"$logf" 2>&1 &
        ;;
    tokio-tungstenite | fastwebsockets)
        [ -n "${peer_bin[$name]:-}" ] || return 1
        (ulimit -n 20000 2>/dev/null; exec taskset -c "$SERVER_CPU" "${peer_bin[$name]}" \
            --listen "127.0.0.1:$port") >>"$logf" 2>&1 &
        ;;
    nginx)
        nginx_dir="$OUT/nginx"
        mkdir -p "$nginx_dir"
        cat >"$nginx_dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $nginx_dir/nginx.pid;
error_log $nginx_dir/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    default_type text/plain;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "ok\n"; }
    }
}
EOF
        (exec taskset -c "$SERVER_CPU" "$nginx_bin" -p "$nginx_dir" -c "$nginx_dir/nginx.conf" \
            -e "$nginx_dir/error.log") >>"$logf" 2>&1 &
        ;;
    *) return 1 ;;
    esac
    server_pid=$!
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            sleep 0.2
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    log "$name did not start (see $logf)"
    stop_server
    return 1
}

stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null
    local i
    for i in $(seq 80); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=""
}

# ------------------------------------------------------------------ rows

# Which servers each row applies to, the row's title, and its unit.
declare -A row_title=(
    [echo16]="echo msgs/s, 100 conns, 32 B, 16 in flight per conn"
    [echo1]="echo msgs/s, 100 conns, 32 B, 1 in flight"
    [idle]="RSS per idle WebSocket, $IDLE_CONNS open"
    [http]="HTTP req/s, wrk -t1 -c100, no pipelining"
    [http16]="HTTP req/s, wrk -t1 -c100, 16 pipelined"
    [ab]="HTTP req/s, ab -k -c100 (HTTP/1.0 keep-alive)"
    [pingpong]="chat relay msgs/s, $PINGPONG_PAIRS pairs ping-ponging"
    [relay]="chat relay p99 latency, $CHAT_CLIENTS clients at 1 msg/s (send → receiving socket)"
    [relay_e2e]="the same runs, send → receiving client's handler"
    [relay_steal]="the same runs, host steal on the worse vCPU, %"
    [relay_busy]="chat relay p99 latency as above, chat --busy-poll $BUSY_POLL"
    [floor]="no server: one loopback hop at $((CHAT_CLIENTS)) msgs/s, write → wake → read p99 (chat-bench wake-floor)"
    [floor_busy]="no server, as above, receiver busy-polling $BUSY_POLL"
)
declare -A row_servers=(
    [echo16]="chat tokio-tungstenite fastwebsockets"
    [echo1]="chat tokio-tungstenite fastwebsockets"
    [idle]="chat tokio-tungstenite fastwebsockets"
    [http]="chat nginx"
    [http16]="chat nginx"
    [ab]="chat nginx"
    [pingpong]="chat"
    [relay]="chat"
    [relay_e2e]="chat"
    [relay_steal]="chat"
    [relay_busy]="chat"
    [floor]="chat"
    [floor_busy]="chat"
)
# Rows that start no server (the figure sits in the chat column).
declare -A row_serverless=([floor]=1 [floor_busy]=1)
# Rows read from another row's logs (no server run of their own).
declare -A row_from=([relay_e2e]=relay [relay_steal]=relay)
# Extra chat arguments for one row.
declare -A row_chat_args=([relay_busy]="--busy-poll $BUSY_POLL")
declare -A row_unit=(
    [echo16]=rate [echo1]=rate [idle]=bytes [http]=rate [http16]=rate [ab]=rate
    [pingpong]=rate [relay]=us [relay_e2e]=us [relay_steal]=pct [relay_busy]=us
    [floor]=us [floor_busy]=us
)

# json_field FILE KEY: a number from chat-bench's last (JSON) line (empty
# when missing); json_count: the same, 0 when missing.
json_field() {
    tail -n 1 "$1" | grep -o "\"$2\":[-0-9.e+]*" | head -n 1 | cut -d: -f2
}
json_count() {
    local v
    v=$(json_field "$1" "$2")
    echo "${v:-0}"
}

# json_expr FILE EXPR: a Python expression over `d`, chat-bench's last
# (JSON) line; empty when the line or the field is missing.
json_expr() {
    tail -n 1 "$1" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
    print(eval(sys.argv[1]))
except Exception:
    pass' "$2" 2>/dev/null
}

load() { timeout "$1" taskset -c "$LOAD_CPU" "${@:2}"; }

# measure ROW SERVER RUN: prints "value errors" (value empty when it failed).
measure() {
    local row="$1" name="$2" run="$3" f="$OUT/$1-$2-$3.log" path="/echo" v="" e=0
    local url="ws://127.0.0.1:$port$path" t=$((DURATION + 60))
    case "$row" in
    echo16 | echo1)
        local depth=16
        [ "$row" = echo1 ] && depth=1
        load "$t" "$bench" echo --url "$url" --connections 100 --size 32 \
            --in-flight "$depth" --duration "$DURATION" >"$f" 2>&1
        v=$(json_field "$f" msgs_per_sec)
        e=$(json_count "$f" errors)
        ;;
    idle)
        # shellcheck disable=SC2086
        load 180 "$bench" idle --url "$url" --connections "$IDLE_CONNS" \
            --pid "$server_pid" --hold 5 $IDLE_ARGS >"$f" 2>&1
        v=$(json_field "$f" rss_per_conn)
        e=$(json_count "$f" errors)
        ;;
    http | http16)
        local script=()
        [ "$row" = http16 ] && script=(-s "$here/pipeline.lua")
        load "$t" wrk -t1 -c100 -d"${DURATION}s" "${script[@]}" \
            "http://127.0.0.1:$port/healthz" ${script:+-- 16} >"$f" 2>&1
        v=$(awk '/^Requests\/sec:/ {print $2}' "$f")
        e=$(awk '/Non-2xx|Socket errors/ {n++} END {print n+0}' "$f")
        ;;
    ab)
        load "$t" ab -k -c 100 -t "$DURATION" -n 100000000 \
            "http://127.0.0.1:$port/healthz" >"$f" 2>&1
        v=$(awk '/^Requests per second:/ {print $4}' "$f")
        e=$(awk '/^(Failed requests|Non-2xx responses):/ {n += $3} END {print n+0}' "$f")
        ;;
    pingpong)
        load "$t" "$bench" chat --url "ws://127.0.0.1:$port/" \
            --clients $((PINGPONG_PAIRS * 2)) --ping-pong --duration "$DURATION" >"$f" 2>&1
        v=$(json_field "$f" msgs_per_sec)
        e=$(($(json_count "$f" errors) + $(json_count "$f" violations)))
        ;;
    relay | relay_busy)
        load $((t + 60)) "$bench" chat --url "ws://127.0.0.1:$port/" \
            --clients "$CHAT_CLIENTS" --rate 1 --duration "$DURATION" >"$f" 2>&1
        v=$(json_expr "$f" 'd["socket_latency_us"]["p99"]')
        e=$(($(json_count "$f" errors) + $(json_count "$f" violations)))
        ;;
    floor | floor_busy)
        local us
        us=$(echo "$BUSY_POLL" | awk '/us$/ {print $0 + 0; next} /ms$/ {print ($0 + 0) * 1000; next} {print $0 * 1000000}')
        [ "$row" = floor ] && us=0
        timeout $((t + 60)) "$bench" wake-floor --rate "$CHAT_CLIENTS" --duration "$DURATION" \
            --receiver-cpu "$SERVER_CPU" --sender-cpu "$LOAD_CPU" --busy-poll-us "$us" >"$f" 2>&1
        v=$(json_expr "$f" 'd["latency_us"]["p99"]')
        e=$(json_count "$f" errors)
        ;;
    relay_e2e)
        f="$OUT/relay-$2-$3.log"
        v=$(json_expr "$f" 'd["latency_us"]["p99"]')
        ;;
    relay_steal)
        f="$OUT/relay-$2-$3.log"
        v=$(json_expr "$f" 'max(d["steal_pct"].values())')
        ;;
    esac
    echo "${v:-} ${e:-0}"
}

# fmt UNIT VALUE
fmt() {
    awk -v u="$1" -v x="$2" 'BEGIN {
        if (u == "rate") {
            if (x >= 1e6) printf "%.2f M", x / 1e6
            else if (x >= 1e3) printf "%.0f k", x / 1e3
            else printf "%.0f", x
        } else if (u == "bytes") {
            if (x >= 10240) printf "%.0f KB", x / 1024
            else if (x >= 1024) printf "%.1f KB", x / 1024
            else printf "%.0f B", x
        } else if (u == "pct") {
            printf "%.1f %%", x
        } else if (u == "us") {
            if (x >= 1000) printf "%.2f ms", x / 1000
            else printf "%.0f µs", x
        } else printf "%s", x
    }'
}

# cell UNIT VALUES...: "median (min–max)"
cell() {
    local unit="$1"
    shift
    [ "$#" -gt 0 ] || { echo "failed"; return; }
    local sorted n med min max
    sorted=$(printf '%s\n' "$@" | sort -g)
    n=$#
    min=$(echo "$sorted" | head -n 1)
    max=$(echo "$sorted" | tail -n 1)
    med=$(echo "$sorted" | awk -v n="$n" '{a[NR] = $1} END {
        if (n % 2) print a[(n + 1) / 2]; else print (a[n / 2] + a[n / 2 + 1]) / 2 }')
    if [ "$n" -eq 1 ]; then
        fmt "$unit" "$med"
    else
        echo "$(fmt "$unit" "$med") ($(fmt "$unit" "$min")–$(fmt "$unit" "$max"))"
    fi
}

# ------------------------------------------------------------------ run

# Runs are the outer loop: run 1 of every cell, then run 2 of every cell...
# so a noisy minute on this shared machine hits every server alike instead
# of one column.
declare -A vals errs cells
for row in $ROWS; do
    [ -n "${row_title[$row]:-}" ] || log "unknown row $row"
done
for run in $(seq "$RUNS"); do
    for row in $ROWS; do
        [ -n "${row_title[$row]:-}" ] || continue
        for name in $SERVERS; do
            case " ${row_servers[$row]} " in *" $name "*) ;; *) continue ;; esac
            v="" e=0
            if [ -n "${row_from[$row]:-}" ] || [ -n "${row_serverless[$row]:-}" ]; then
                read -r v e < <(measure "$row" "$name" "$run")
            elif CHAT_ARGS="$CHAT_ARGS ${row_chat_args[$row]:-}" start_server "$name"; then
                read -r v e < <(measure "$row" "$name" "$run")
                stop_server
            fi
            log "$row $name run $run: ${v:-failed} (errors ${e:-0})"
            printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$name" "$run" "${v:-}" "${e:-0}" >>"$results"
            [ -n "$v" ] && vals["$row,$name"]="${vals[$row,$name]:-} $v"
            errs["$row,$name"]=$((${errs[$row,$name]:-0} + ${e:-0}))
        done
    done
done
for row in $ROWS; do
    for name in $SERVERS; do
        case " ${row_servers[$row]:-} " in *" $name "*) ;; *) continue ;; esac
        # shellcheck disable=SC2086
        c="$(cell "${row_unit[$row]}" ${vals[$row,$name]:-})"
        [ "${errs[$row,$name]:-0}" -gt 0 ] && c="$c ⚠ ${errs[$row,$name]} errors"
        cells["$row,$name"]="$c"
    done
done

{
    echo "Server on core $SERVER_CPU, load on core $LOAD_CPU; median of $RUNS runs (min–max); ${DURATION}s per run; $(date -u +%Y-%m-%d)."
    echo
    header="| measure |"
    sep="|---|"
    for name in $SERVERS; do
        header="$header $name |"
        sep="$sep---|"
    done
    echo "$header"
    echo "$sep"
    for row in $ROWS; do
        [ -n "${row_title[$row]:-}" ] || continue
        line="| ${row_title[$row]} |"
        for name in $SERVERS; do
            line="$line ${cells[$row,$name]:-—} |"
        done
        echo "$line"
    done
} | tee "$OUT/table.md"
log "logs and results.tsv in $OUT"
