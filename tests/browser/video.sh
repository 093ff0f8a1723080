#!/usr/bin/env bash
# Video calls in real browsers through a real TURN server (issue 15):
#
#   tests/browser/video.sh path/to/chat              the test (video.spec.mjs)
#   tests/browser/video.sh path/to/chat --measure N  figures only (video-measure.mjs)
#   tests/browser/video.sh path/to/chat --screens DIR
#
# Runs everything in a private network namespace whose only interface is
# `lo` (unshare -n as root, unshare -rn otherwise): Chromium's ICE would
# otherwise also try the machine's other addresses, and the house rule is
# loopback only. Inside: coturn (tests/browser/turn.sh) checked with a real
# allocation, a plain chat server and one with `--ice-server turn:...
# --turn-secret-file`, then the browser test against both. Everything it
# starts is stopped on exit; every wait is bounded.
# Needs: chromium, coturn, openssl, python3, iproute2 (ip), util-linux (unshare).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { echo "usage: $0 SERVER_BINARY [--measure N] [--screens DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
bin=$1
shift
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
[ -x "$bin" ] || { echo "video.sh: $bin is not an executable file" >&2; exit 2; }
measure= screens=
while [ $# -gt 0 ]; do
    case $1 in
        --measure) [ $# -ge 2 ] || usage; measure=$2; shift 2 ;;
        --screens) [ $# -ge 2 ] || usage; screens=$2; shift 2 ;;
        *) usage ;;
    esac
done

if [ "${CHAT_VIDEO_NETNS:-}" != 1 ]; then
    export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
    [ -x "$CHROMIUM" ] || { echo "video.sh: $CHROMIUM not found: apt-get install -y chromium" >&2; exit 1; }
    for tool in turnserver turnutils_uclient openssl python3 ip unshare node; do
        command -v "$tool" >/dev/null || { echo "video.sh: $tool not found (apt-get install -y coturn openssl python3 iproute2 util-linux nodejs)" >&2; exit 1; }
    done
    # npm needs the network, so before leaving it.
    if [ ! -d "$here/node_modules/playwright-core" ]; then
        (cd "$here" && timeout 300 npm ci --no-audit --no-fund) || { echo "video.sh: npm ci failed" >&2; exit 1; }
    fi
    ns=(unshare --net)
    [ "$(id -u)" = 0 ] || ns=(unshare --map-root-user --net)
    "${ns[@]}" true || { echo "video.sh: cannot make a private network namespace with ${ns[*]}" >&2; exit 1; }
    args=("$bin")
    [ -n "$measure" ] && args+=(--measure "$measure")
    [ -n "$screens" ] && args+=(--screens "$screens")
    CHAT_VIDEO_NETNS=1 exec "${ns[@]}" bash "${BASH_SOURCE[0]}" "${args[@]}"
fi

# --- inside the private namespace from here on
ip link set lo up || { echo "video.sh: cannot bring lo up" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/chat-video-test.XXXXXX")
# shellcheck source=tests/browser/turn.sh
. "$here/turn.sh"
plain_pid= turn_chat_pid=
cleanup() {
    local pid _
    for pid in $plain_pid $turn_chat_pid; do kill -TERM "$pid" 2>/dev/null; done
    for pid in $plain_pid $turn_chat_pid; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    turn_stop
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# start_chat NAME LOG ARGS...: starts the server on a free port and sets
# NAME_pid and NAME_port once it accepts (bounded, 10 s).
start_chat() {
    local name=$1 log=$2 port pid _
    shift 2
    port=$(free_port)
    "$bin" --listen "127.0.0.1:$port" "$@" >"$log" 2>&1 &
    pid=$!
    printf -v "${name}_pid" %s "$pid"
    printf -v "${name}_port" %s "$port"
    for _ in $(seq 100); do
        timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "video.sh: chat $* did not start:" >&2
    tail -n 20 "$log" >&2
    return 1
}

pre_ok=0
turn_start "$tmp" || { echo "FAIL coturn starts on 127.0.0.1"; echo "0 passed, 1 failed"; exit 1; }
if turn_check; then
    echo "ok   coturn on 127.0.0.1:$turn_port allocates and relays with TURN REST credentials, refuses a wrong one"
    pre_ok=1
else
    echo "FAIL coturn on 127.0.0.1:$turn_port allocates and relays with TURN REST credentials, refuses a wrong one"
    tail -n 20 "$turn_log"
fi
plain_port= turn_chat_port=
if ! start_chat plain "$tmp/plain.log" || ! start_chat turn_chat "$tmp/turn-chat.log" \
    --ice-server "turn:127.0.0.1:$turn_port" --turn-secret-file "$turn_secret_file"; then
    echo "FAIL the chat servers start (plain, and with --ice-server/--turn-secret-file)"
    echo "$pre_ok passed, $((2 - pre_ok)) failed"
    exit 1
fi

if [ -n "$measure" ]; then
    timeout $((measure * 2 * 25 + 90)) node "$here/video-measure.mjs" "http://127.0.0.1:$plain_port" \
        --turn "http://127.0.0.1:$turn_chat_port" --calls "$measure"
    exit $?
fi
spec=(node "$here/video.spec.mjs" "http://127.0.0.1:$plain_port" --turn "http://127.0.0.1:$turn_chat_port"
    --turn-port "$turn_port" --turn-secret-file "$turn_secret_file")
[ -n "$screens" ] && spec+=(--screens "$screens")
timeout 240 "${spec[@]}" 2>&1 | tee "$tmp/spec.out"
rc=${PIPESTATUS[0]}
last=$(tail -n 1 "$tmp/spec.out")
if [ $rc -ne 0 ]; then
    echo "--- plain server log (last 10 lines)"; tail -n 10 "$tmp/plain.log"
    echo "--- TURN server's chat log (last 10 lines)"; tail -n 10 "$tmp/turn-chat.log"
    echo "--- turnserver log (last 10 lines, less turn_check's own refusals)"
    grep -v ":0123456789abcdef>" "$turn_log" | tail -n 10
fi
# One closing count (the last line) for the coturn check and the browser
# steps together.
if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    p=$((BASH_REMATCH[1] + pre_ok)) f=$((BASH_REMATCH[2] + 1 - pre_ok))
else
    echo "$last"
    p=$pre_ok f=$((2 - pre_ok))
fi
echo "$p passed, $f failed"
[ $rc -eq 0 ] && [ "$f" -eq 0 ]
