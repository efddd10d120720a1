#!/usr/bin/env bash
# perf/idle_memory.sh: resident memory and descriptors per idle relayed
# connection, for `gatehouse forward` (issue 3 target: at most 16 KiB) and,
# for reference, HAProxy in TCP mode.
#
# For each relay: start a `gatehouse-load sink` and the relay in front of it,
# read the relay's VmRSS and descriptor count (/proc/PID/status, /proc/PID/fd),
# open IDLE_CONNECTIONS idle connections through it with `gatehouse-load idle`,
# wait until the relay's descriptor count settles, read both again, and report
# the difference per connection. The sink's own descriptor count shows how
# many sessions reached the back-end.
#
# Usage: perf/idle_memory.sh [--report FILE]   (appends a Markdown section)
# Knobs (environment): IDLE_CONNECTIONS (10000, lowered to what the descriptor
# limit allows), IDLE_HOLD (15 s, at least 10), IDLE_SOURCES (1 loopback source address;
# more spreads the client ports), IDLE_PING (0 bytes sent per connection), IDLE_RELAYS ("gatehouse haproxy"),
# GATEHOUSE_CORES (2), PORT_BASE (23150), SKIP_BUILD (0), GATEHOUSE_BIN
# (target/release/gatehouse), GATEHOUSE_LOG (warn).
set -euo pipefail

IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_HOLD=${IDLE_HOLD:-15}
# The relay is measured while the connections are held: the hold must outlast
# the wait for its descriptor count to settle.
((IDLE_HOLD >= 10)) || IDLE_HOLD=10
IDLE_SOURCES=${IDLE_SOURCES:-1}
# Bytes each connection sends right after it opens (0: none). With bytes, the
# sessions were active once and went quiet: the relay is read 1 s after the
# connections settle, past gatehouse's 250-500 ms hot window.
IDLE_PING=${IDLE_PING:-0}
IDLE_RELAYS=${IDLE_RELAYS:-gatehouse haproxy}
GATEHOUSE_CORES=${GATEHOUSE_CORES:-2}
PORT_BASE=${PORT_BASE:-23150}
SKIP_BUILD=${SKIP_BUILD:-0}
REPORT=""
if [[ ${1:-} == --report ]]; then REPORT=${2:?--report needs a file}; fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
# shellcheck source=perf/lib.sh
source "$REPO/perf/lib.sh"
LOAD=$REPO/target/release/gatehouse-load
GATEHOUSE=${GATEHOUSE_BIN:-$REPO/target/release/gatehouse}
# HAProxy runs without logs; gatehouse logs one event per session at info,
# which would cost it CPU the peer does not spend.
GATEHOUSE_LOG=${GATEHOUSE_LOG:-warn}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-idle.XXXXXX")
SINK_PORT=$((PORT_BASE + 1))
RELAY_PORT=$((PORT_BASE + 2))

trap 'stop_all; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

raise_fd_limit

if [[ $SKIP_BUILD != 1 ]]; then
    cargo build --release -p gatehouse-perf
    cargo build --release -p gatehouse || say "gatehouse did not build"
fi

# measure RELAY: prints one Markdown table row (or a row saying why not).
measure() {
    local relay=$1 n=$IDLE_CONNECTIONS pid sink_pid idle_pid cfg maxconn i
    local rss0 fd0 sink_fd0 rss1 fd1 sink_fd1 last same opened still
    # Each relayed session holds at least two descriptors in the relay.
    ((n > (FD_LIMIT - 1000) / 2)) && n=$(((FD_LIMIT - 1000) / 2))

    "$LOAD" sink --listen "127.0.0.1:$SINK_PORT" >/dev/null 2>>"$WORK/sink.log" &
    sink_pid=$!
    STARTED+=("$sink_pid")
    wait_port "$SINK_PORT" || return 1
    case $relay in
    gatehouse)
        if ! [[ -x $GATEHOUSE ]] || ! "$GATEHOUSE" forward --help >/dev/null 2>&1; then
            echo "| gatehouse forward | not available | | | | | | | |"
            stop_all
            return 0
        fi
        RUST_LOG=$GATEHOUSE_LOG "$GATEHOUSE" forward --listen "127.0.0.1:$RELAY_PORT" --to "127.0.0.1:$SINK_PORT" \
            --cores "$GATEHOUSE_CORES" >>"$WORK/gatehouse.log" 2>&1 &
        pid=$!
        ;;
    haproxy)
        if ! command -v haproxy >/dev/null 2>&1; then
            echo "| haproxy | not installed | | | | | | | |"
            stop_all
            return 0
        fi
        # HAProxy reserves 2 descriptors per maxconn plus about 4,500 of its own.
        maxconn=$(((FD_LIMIT - 5000) / 2))
        ((n > maxconn - 100)) && n=$((maxconn - 100))
        cfg=$WORK/haproxy.cfg
        printf '%s\n' "global" "    nbthread 2" "    maxconn $maxconn" \
            "defaults" "    mode tcp" "    option splice-auto" "    timeout connect 5s" \
            "    timeout client 120s" "    timeout server 120s" \
            "listen idle" "    bind 127.0.0.1:$RELAY_PORT" "    server sink 127.0.0.1:$SINK_PORT" >"$cfg"
        haproxy -db -f "$cfg" >>"$WORK/haproxy.log" 2>&1 &
        pid=$!
        ;;
    esac
    STARTED+=("$pid")
    wait_port "$RELAY_PORT" || { stop_all; return 1; }
    sleep 1
    rss0=$(rss_kib "$pid")
    fd0=$(fd_count "$pid")
    sink_fd0=$(fd_count "$sink_pid")

    "$LOAD" --json idle --target "127.0.0.1:$RELAY_PORT" --connections "$n" \
        --hold "$IDLE_HOLD" --sources "$IDLE_SOURCES" --ping "$IDLE_PING" >"$WORK/idle.json" 2>"$WORK/idle.err" &
    idle_pid=$!
    STARTED+=("$idle_pid")
    for ((i = 0; i < 1200; i++)); do
        grep -q '^ready' "$WORK/idle.err" 2>/dev/null && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
    done
    # Let the relay finish its back-end connects: wait until its descriptor
    # count has not changed for 2 s (30 s at most).
    last=-1
    same=0
    for ((i = 0; i < 60 && same < 4; i++)); do
        sleep 0.5
        fd1=$(fd_count "$pid")
        if [[ $fd1 == "$last" ]]; then same=$((same + 1)); else same=0; fi
        last=$fd1
    done
    ((IDLE_PING > 0)) && sleep 1
    rss1=$(rss_kib "$pid")
    fd1=$(fd_count "$pid")
    sink_fd1=$(fd_count "$sink_pid")
    if ! kill -0 "$idle_pid" 2>/dev/null; then
        echo "| $relay | measured after the connections closed (raise IDLE_HOLD) | | | | | | | |"
        stop_all
        return 0
    fi
    wait "$idle_pid" 2>/dev/null || true
    opened=$(sed -n 's/.*"opened":\([0-9]*\).*/\1/p' "$WORK/idle.json")
    still=$(sed -n 's/.*"still_open":\([0-9]*\).*/\1/p' "$WORK/idle.json")
    stop_all
    if [[ -z $opened || $opened == 0 ]]; then
        echo "| $relay | 0 of $n opened | | | | | | | |"
        return 0
    fi
    awk -v relay="$relay" -v n="$n" -v opened="$opened" -v still="${still:-?}" -v hold="$IDLE_HOLD" \
        -v rss0="$rss0" -v rss1="$rss1" -v fd0="$fd0" -v fd1="$fd1" -v s0="$sink_fd0" -v s1="$sink_fd1" 'BEGIN {
        kib = (rss1 - rss0) / opened
        if (relay == "gatehouse") label = "gatehouse forward"; else label = relay
        verdict = (relay == "gatehouse") ? ((kib <= 16) ? "PASS" : "FAIL") : "(reference)"
        printf "| %s | %d of %d | %d | %s | %d | %d | %.2f | %.2f | %s |\n", label, opened, n, s1 - s0, still, rss0, rss1, kib, (fd1 - fd0) / opened, verdict
    }'
}

SECTION=$WORK/section.md
{
    echo "## Idle memory"
    echo
    echo "Idle connections opened through each relay to \`gatehouse-load sink\` and held"
    echo "${IDLE_HOLD} s; RSS (VmRSS) and descriptors of the relay process read before and after."
    echo "RSS is user-space memory only: kernel socket buffers are not in it. Descriptor"
    echo "limit: $FD_LIMIT (a relayed session needs at least two descriptors in the relay, so"
    echo "the connection count is capped to fit it)."
    if ((IDLE_PING > 0)); then
        echo "Each connection sent $IDLE_PING bytes right after it opened (\`IDLE_PING\`): sessions that"
        echo "were active once and went quiet; RSS read 1 s after the descriptor count settled."
    else
        echo "The connections send nothing (\`IDLE_PING=1024\` measures sessions that were active once)."
    fi
    echo
    echo "| relay | connections opened | sessions at the sink | still open after hold | RSS before KiB | RSS after KiB | KiB / connection | descriptors / connection | target ≤ 16 KiB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    for relay in $IDLE_RELAYS; do
        say "idle memory: $relay"
        measure "$relay" || echo "| $relay | failed to start | | | | | | | |"
    done
} >"$SECTION"

cat "$SECTION"
if [[ -n $REPORT ]]; then
    { echo; cat "$SECTION"; } >>"$REPORT"
fi
