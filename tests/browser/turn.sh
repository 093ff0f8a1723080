# TURN helper for the video test, sourced by tests/browser/video.sh (not run
# on its own). Starts Debian's coturn (`turnserver`) on loopback with the
# TURN REST shared secret that the chat server hands out credentials for,
# and proves it answers before any browser is involved.
#
#   turn_start DIR      start turnserver; sets turn_pid, turn_port, turn_secret_file
#   turn_check          allocate + relay with computed credentials; refuse bad ones
#   turn_stop           stop it (bounded)
#
# Why these options: `-n` reads no turnserver.conf (a system coturn's config
# must not leak in); `--allow-loopback-peers` because coturn refuses relaying
# to 127.0.0.0/8 by default and both browsers live on loopback here;
# `--no-tls --no-dtls` since no certificate is needed on loopback; `--no-cli`
# so no admin port 5766 is opened; `--db` in DIR so no SQLite file is created
# under /var/lib/turn; `-m 1` relay thread, the machine is small. The relay
# port range is small and bounded; the caller runs all this in a private
# network namespace, so the range is free.

turn_pid= turn_port= turn_secret_file= turn_secret= turn_log=

# The TURN REST credential for USER: base64(HMAC-SHA1(secret, USER)), the
# same computation the chat server does (PROTOCOL.md "Video").
turn_password() {
    printf %s "$1" | openssl dgst -sha1 -hmac "$turn_secret" -binary | base64
}

turn_start() {
    local dir=$1
    turn_port=$(python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    turn_secret=$(openssl rand -hex 24)
    turn_secret_file=$dir/turn-secret
    # A trailing newline on purpose: the chat server trims the file's content.
    printf '%s\n' "$turn_secret" >"$turn_secret_file"
    turn_log=$dir/turnserver.log
    turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
        --listening-port="$turn_port" --use-auth-secret \
        --static-auth-secret="$turn_secret" --realm=chat.test \
        --no-tls --no-dtls --no-cli --allow-loopback-peers \
        --min-port=49152 --max-port=49251 --total-quota=100 \
        --db="$dir/turndb" --pidfile="$dir/turnserver.pid" \
        --log-file="$turn_log" --simple-log --no-stdout-log -m 1 -v \
        >/dev/null 2>&1 &
    turn_pid=$!
    # Ready when its UDP socket on 127.0.0.1:PORT is bound (it logs no line
    # for that without -v): read /proc/net/udp, bounded to 10 s.
    local _ hex
    hex=$(printf '0100007F:%04X' "$turn_port")
    for _ in $(seq 100); do
        grep -q " $hex " /proc/net/udp 2>/dev/null && return 0
        kill -0 "$turn_pid" 2>/dev/null || { echo "turnserver exited:"; tail -n 20 "$turn_log"; return 1; }
        sleep 0.1
    done
    echo "turnserver did not open 127.0.0.1:$turn_port within 10 s:"; tail -n 20 "$turn_log"
    return 1
}

# One TURN allocation relaying 5 messages with good credentials (username
# EXPIRY:PAIRID, as the server makes them), and a refusal with a wrong one.
# turnutils_uclient exits 0 either way, so its output is read.
turn_check() {
    local user pass out
    user="$(($(date +%s) + 600)):0123456789abcdef"
    pass=$(turn_password "$user")
    out=$(timeout 20 turnutils_uclient -y -n 5 -m 1 -u "$user" -w "$pass" -p "$turn_port" 127.0.0.1 2>&1)
    if ! grep -q 'tot_recv_msgs=[1-9]' <<<"$out" || grep -q 'Cannot complete Allocation' <<<"$out"; then
        echo "allocation with computed credentials failed:"; tail -n 5 <<<"$out"
        return 1
    fi
    out=$(timeout 20 turnutils_uclient -y -n 5 -m 1 -u "$user" -w "d3Jvbmc=" -p "$turn_port" 127.0.0.1 2>&1)
    if ! grep -q 'Cannot complete Allocation' <<<"$out"; then
        echo "allocation with a wrong credential was not refused:"; tail -n 5 <<<"$out"
        return 1
    fi
}

turn_stop() {
    [ -n "$turn_pid" ] || return 0
    kill -TERM "$turn_pid" 2>/dev/null
    local _
    for _ in $(seq 50); do kill -0 "$turn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$turn_pid" 2>/dev/null
    wait "$turn_pid" 2>/dev/null
    turn_pid=
}
