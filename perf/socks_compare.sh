#!/usr/bin/env bash
# perf/socks_compare.sh: connections per second through SOCKS5 gateways, side
# by side on loopback (issue 4's targets), several rounds, median per cell;
# prints a table and writes perf/reports/<date>-socks-compare.md.
#
# Shapes (16 in flight: connect, [TLS], [SOCKS5], 1 KiB echo, close), all
# against one `gatehouse-load echo` back-end:
#   dante          SOCKS5 CONNECT to 127.0.0.1:ECHO (ATYP 1) through danted
#   gatehouse      SOCKS5 CONNECT with a fresh STA ticket (ATYP 3) through
#                  `gatehouse run` with [gateway] plaintext = true; tickets
#                  fetched in bulk over the XML endpoint before each run
#   gatehouse-tls  the same inside TLS, through a second `gatehouse run`
#   haproxy-tls    TLS terminated by HAProxy (same certificate), plain TCP
#                  to the echo; no SOCKS
#   direct         the echo itself, for reference
#
# Targets: gatehouse conn/s >= 2.0x dante's and p99 <= dante's (PASS/FAIL);
# gatehouse-tls next to haproxy-tls (reported).
#
# Knobs (environment): ROUNDS (3), SECONDS_PER_RUN (6), CONCURRENCY (16),
# PORT_BASE (23300, below the ephemeral range), TICKETS (tickets fetched per
# gatehouse run; default 10,000 per second of run, about twice what one spent
# here), STA_CONNECTIONS (4),
# GATEHOUSE_CORES (0 = one per CPU), DANTE_PROCESSES (2, danted -N),
# DANTE_SETTLE (65: seconds between a dante run and the next round),
# HAPROXY_THREADS (2), LOAD_THREADS (2), SKIP_BUILD (0), REPORT
# (perf/reports/<date>-socks-compare.md, or -2, -3 ... when taken), GATEHOUSE_BIN
# (target/release/gatehouse), GATEHOUSE_LOG (warn).
#
# Every process it starts is stopped by PID on exit. Run time with the
# defaults: about 2 minutes per round (fetching tickets and waiting for
# dante's ports included) plus the build.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-6}
CONCURRENCY=${CONCURRENCY:-16}
PORT_BASE=${PORT_BASE:-23300}
TICKETS=${TICKETS:-$((SECONDS_PER_RUN * 10000))}
STA_CONNECTIONS=${STA_CONNECTIONS:-4}
GATEHOUSE_CORES=${GATEHOUSE_CORES:-0}
DANTE_PROCESSES=${DANTE_PROCESSES:-2}
HAPROXY_THREADS=${HAPROXY_THREADS:-2}
LOAD_THREADS=${LOAD_THREADS:-2}
SKIP_BUILD=${SKIP_BUILD:-0}
GATEHOUSE_LOG=${GATEHOUSE_LOG:-warn}
DANTE_SETTLE=${DANTE_SETTLE:-65}

((ROUNDS >= 1 && ROUNDS <= 50)) || { echo "ROUNDS must be 1 to 50" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
# shellcheck source=perf/lib.sh
source "$REPO/perf/lib.sh"
DATE=$(date -u +%Y-%m-%d)
REPORT=${REPORT:-$(free_report "perf/reports/$DATE-socks-compare")}
LOAD=$REPO/target/release/gatehouse-load
GATEHOUSE=${GATEHOUSE_BIN:-$REPO/target/release/gatehouse}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-socks-compare.XXXXXX")
# Longest one load run may take: fetching tickets is bounded by 90 s in the
# tool itself, the run by SECONDS_PER_RUN.
RUN_LIMIT=$((SECONDS_PER_RUN + 120))

ECHO_PORT=$((PORT_BASE + 2))
GH_PLAIN_PORT=$((PORT_BASE + 20))
GH_PLAIN_ADMIN=$((PORT_BASE + 21))
GH_TLS_PORT=$((PORT_BASE + 30))
GH_TLS_ADMIN=$((PORT_BASE + 31))
HAPROXY_TLS_PORT=$((PORT_BASE + 40))

SHAPES=(gatehouse gatehouse-tls haproxy-tls direct dante)
# Rotated per round; dante always runs last (see start_dante).
ROTATED=(gatehouse gatehouse-tls haproxy-tls direct)

# --- process bookkeeping: every PID we start, stopped on exit ---------------
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# gatehouse run generates its certificate at first start: allow it 20 s.
WAIT_PORT_SECONDS=20

# --- limits -------------------------------------------------------------------
raise_fd_limit

# --- build --------------------------------------------------------------------
if [[ $SKIP_BUILD != 1 ]]; then
    say "cargo build --release -p gatehouse-perf -p gatehouse"
    cargo build --release -p gatehouse-perf -p gatehouse
fi
[[ -x $LOAD ]] || { say "missing $LOAD"; exit 1; }
[[ -x $GATEHOUSE ]] || { say "missing $GATEHOUSE"; exit 1; }

# --- peers: dante and HAProxy from the system packages -------------------------
install_pkg() { # install_pkg PACKAGE: apt-get install, apt-get update only if that fails
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$1" >/dev/null; }
}
if ! command -v danted >/dev/null 2>&1; then
    say "installing dante-server"
    install_pkg dante-server
fi
if ! command -v haproxy >/dev/null 2>&1; then
    say "installing haproxy"
    install_pkg haproxy
fi
DANTED=$(command -v danted)

# --- back-end -----------------------------------------------------------------
"$LOAD" echo --listen "127.0.0.1:$ECHO_PORT" 2>>"$WORK/echo.log" >/dev/null &
STARTED+=($!)
wait_port "$ECHO_PORT"

# --- dante ----------------------------------------------------------------------
# The package's own service (if systemd started one) listens on 1080 and is
# left alone; ours runs in the foreground with its own config and PID file.
# danted binds every outgoing connection to its external address with port 0
# before connecting, so the TIME_WAIT sockets of its previous runs (it closes
# first towards the echo) use up that address's ephemeral ports: at about
# 2,000 connections/s, 6 s runs exhaust 127.0.0.1's within a few rounds and
# dante answers 03 (network unreachable). So that dante meets a fresh address
# in every run, each run restarts it with external address 127.0.0.(10 +
# round) and its own port (PORT_BASE + 100 + round; round 0 is the check).
# Worse, a port taken by bind() cannot be picked by anyone's connect() while
# its TIME_WAIT lasts (60 s), so right after a dante run every other shape
# finds most of the ephemeral range blocked (a direct run fell from 10,000 to
# 50 connections/s). Hence dante runs last in every round (and in the
# check), and the next round starts DANTE_SETTLE seconds later.
DANTE_PID=""
# start_dante ROUND: (re)starts danted for that round.
start_dante() {
    local round=$1
    [[ -n $DANTE_PID ]] && stop_pid "$DANTE_PID"
    DANTE_PORT=$((PORT_BASE + 100 + round))
    cat >"$WORK/danted.conf" <<EOF
logoutput: stderr
internal: 127.0.0.1 port = $DANTE_PORT
external: 127.0.0.$((10 + round))
socksmethod: none
clientmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
    from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
    from: 127.0.0.0/8 to: 0.0.0.0/0
}
EOF
    "$DANTED" -f "$WORK/danted.conf" -p "$WORK/danted.pid" -N "$DANTE_PROCESSES" 2>>"$WORK/danted.log" >/dev/null &
    DANTE_PID=$!
    STARTED+=("$DANTE_PID")
    wait_port "$DANTE_PORT"
}
start_dante 0

# --- gatehouse: one plaintext, one TLS instance --------------------------------
# start_gatehouse NAME GATEWAY_PORT ADMIN_PORT PLAINTEXT(true|false)
start_gatehouse() {
    local dir=$WORK/$1
    mkdir -p "$dir"
    cat >"$dir/gatehouse.toml" <<EOF
[gateway]
plaintext = $4

[engine]
cores = $GATEHOUSE_CORES
drain_secs = 1

[sta]
# Tickets fetched for one run and not spent stay alive for their 100 s;
# the next run's batch must fit next to them.
max_tickets = 2000000
EOF
    RUST_LOG=$GATEHOUSE_LOG "$GATEHOUSE" run --config "$dir/gatehouse.toml" --data-dir "$dir/data" \
        --gateway-listen "127.0.0.1:$2" --admin-listen "127.0.0.1:$3" >>"$dir/log" 2>&1 &
    STARTED+=($!)
    wait_port "$2" && wait_port "$3"
}
start_gatehouse gatehouse "$GH_PLAIN_PORT" "$GH_PLAIN_ADMIN" true
start_gatehouse gatehouse-tls "$GH_TLS_PORT" "$GH_TLS_ADMIN" false
CERT=$WORK/gatehouse-tls/data/tls/gateway.crt
KEY=$WORK/gatehouse-tls/data/tls/gateway.key
[[ -s $CERT && -s $KEY ]] || { say "gatehouse generated no certificate at $CERT"; exit 1; }

# --- HAProxy terminating TLS with the same certificate -------------------------
cat "$CERT" "$KEY" >"$WORK/haproxy.pem"
HAPROXY_MAXCONN=$(((FD_LIMIT - 5000) / 2))
((HAPROXY_MAXCONN > 20000)) && HAPROXY_MAXCONN=20000
cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $HAPROXY_THREADS
    maxconn $HAPROXY_MAXCONN
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tls_echo
    bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $WORK/haproxy.pem
    default_backend echo
backend echo
    server echo 127.0.0.1:$ECHO_PORT
EOF
haproxy -db -f "$WORK/haproxy.cfg" >>"$WORK/haproxy.log" 2>&1 &
STARTED+=($!)
wait_port "$HAPROXY_TLS_PORT"

# --- one run per shape ------------------------------------------------------------
# load_args SHAPE: the gatehouse-load connrate arguments of a shape.
load_args() {
    local common=(--concurrency "$CONCURRENCY" --size 1024 --seconds "$SECONDS_PER_RUN" --threads "$LOAD_THREADS")
    local tickets=(--preamble socks5 --worker "127.0.0.1:$ECHO_PORT" --tickets "$TICKETS"
        --sta-connections "$STA_CONNECTIONS")
    case $1 in
    dante) echo "--target 127.0.0.1:$DANTE_PORT --preamble socks5 --socks-ip 127.0.0.1 --socks-port $ECHO_PORT ${common[*]}" ;;
    gatehouse) echo "--target 127.0.0.1:$GH_PLAIN_PORT ${tickets[*]} --sta-url http://127.0.0.1:$GH_PLAIN_ADMIN/scripts/ctxsta.dll ${common[*]}" ;;
    gatehouse-tls) echo "--target 127.0.0.1:$GH_TLS_PORT --tls --tls-ca $CERT ${tickets[*]} --sta-url http://127.0.0.1:$GH_TLS_ADMIN/scripts/ctxsta.dll ${common[*]}" ;;
    haproxy-tls) echo "--target 127.0.0.1:$HAPROXY_TLS_PORT --tls --tls-ca $CERT ${common[*]}" ;;
    direct) echo "--target 127.0.0.1:$ECHO_PORT ${common[*]}" ;;
    esac
}
# run_shape SHAPE OUT: one connrate run, JSON in OUT (empty on failure).
run_shape() {
    local args
    read -r -a args <<<"$(load_args "$1")"
    timeout -k 5 "$RUN_LIMIT" "$LOAD" --json connrate "${args[@]}" >"$2" 2>>"$WORK/load.log" || true
}

# Every peer answers before the timed part: one short run each.
say "checking each shape for 1 s"
for shape in "${SHAPES[@]}"; do
    read -r -a args <<<"$(load_args "$shape")"
    for ((i = 0; i < ${#args[@]}; i++)); do
        [[ ${args[$i]} == --seconds ]] && args[i+1]=1
        [[ ${args[$i]} == --tickets ]] && args[i+1]=2000
    done
    if ! timeout -k 5 60 "$LOAD" connrate "${args[@]}" >"$WORK/check-$shape.txt" 2>&1; then
        say "$shape does not work:"
        cat "$WORK/check-$shape.txt" >&2
        for f in "$WORK"/*.log "$WORK"/*/log; do [[ -s $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
        exit 1
    fi
done

# dante_settle: waits until the ports of dante's last run are free again.
dante_settle() {
    say "waiting ${DANTE_SETTLE}s for the TIME_WAIT ports of dante's run to expire"
    sleep "$DANTE_SETTLE"
}

# --- rounds -------------------------------------------------------------------
dante_settle
RESULTS=$WORK/results
mkdir -p "$RESULTS"
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED_AT=$(date -u +%H:%M:%S)
for ((round = 1; round <= ROUNDS; round++)); do
    if ((round > 1)); then dante_settle; fi
    n=${#ROTATED[@]}
    order=()
    for ((k = 0; k < n; k++)); do order+=("${ROTATED[$(((k + round - 1) % n))]}"); done
    order+=(dante)
    for shape in "${order[@]}"; do
        say "round $round/$ROUNDS: $shape"
        if [[ $shape == dante ]] && ! start_dante "$round"; then
            say "dante did not restart: round $round has no dante run"
            continue
        fi
        run_shape "$shape" "$RESULTS/$round-$shape.json"
    done
done

# --- helpers (as in compare.sh) -------------------------------------------------
cell() { for ((r = 1; r <= ROUNDS; r++)); do jget "$RESULTS/$r-$1.json" "$2"; done | median; }
round_ratio() { # round_ratio SHAPE OTHER KEY: median of per-round ratios
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        ratio "$(jget "$RESULTS/$r-$1.json" "$3")" "$(jget "$RESULTS/$r-$2.json" "$3")"
        echo
    done | median
}
# errors SHAPE: total over rounds, with kinds and SOCKS reply codes.
errors() {
    local f k total=0 kinds="" missing=0 codes=""
    declare -A by=()
    for ((r = 1; r <= ROUNDS; r++)); do
        f=$RESULTS/$r-$1.json
        [[ -s $f ]] || { missing=$((missing + 1)); continue; }
        for k in connect tls preamble io timeout mismatch; do
            by[$k]=$((${by[$k]:-0} + $(int "$f" "errors_$k")))
        done
        c=$(jget "$f" socks_refused_codes)
        [[ -n $c && $c != 0 ]] && codes="$codes${codes:+; }round $r: $c"
    done
    for k in connect tls preamble io timeout mismatch; do
        if ((by[$k] > 0)); then
            total=$((total + by[$k]))
            kinds="$kinds${kinds:+, }$k ${by[$k]}"
        fi
    done
    local out=$total
    ((total > 0)) && out="$total ($kinds)"
    [[ -n $codes ]] && out="$out; socks replies $codes"
    ((missing > 0)) && out="$out; $missing runs produced no report"
    echo "$out"
}

TABLE=$WORK/table.md
{
    echo "| shape | conn/s | p50 µs | p99 µs | p999 µs | conn/s ×dante | p99 ×dante | conn/s ×haproxy-tls | p99 ×haproxy-tls | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for shape in "${SHAPES[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$shape" \
            "$(fmt "$(cell "$shape" conn_per_s)" 0)" \
            "$(fmt "$(cell "$shape" p50_us)" 0)" \
            "$(fmt "$(cell "$shape" p99_us)" 0)" \
            "$(fmt "$(cell "$shape" p999_us)" 0)" \
            "$(fmt "$(round_ratio "$shape" dante conn_per_s)" 2)" \
            "$(fmt "$(round_ratio "$shape" dante p99_us)" 2)" \
            "$(fmt "$(round_ratio "$shape" haproxy-tls conn_per_s)" 2)" \
            "$(fmt "$(round_ratio "$shape" haproxy-tls p99_us)" 2)" \
            "$(errors "$shape")"
    done
} >"$TABLE"

TARGETS=$WORK/targets.md
{
    echo "| target | measured | result |"
    echo "|---|---:|---|"
    v=$(round_ratio gatehouse dante conn_per_s)
    echo "| gatehouse (plaintext, SOCKS5 + ticket) conn/s ≥ 2.0× dante | $(fmt "$v" 2)× | $(pass_if "$v" ">=" 2.0) |"
    v=$(round_ratio gatehouse dante p99_us)
    echo "| gatehouse p99 ≤ dante's | $(fmt "$v" 2)× | $(pass_if "$v" "<=" 1.0) |"
    v=$(round_ratio gatehouse-tls haproxy-tls conn_per_s)
    w=$(round_ratio gatehouse-tls haproxy-tls p99_us)
    echo "| gatehouse-tls next to haproxy-tls (report) | conn/s $(fmt "$v" 2)×, p99 $(fmt "$w" 2)× | report |"
} >"$TARGETS"

TICKET_TABLE=$WORK/tickets.md
{
    echo "| shape | tickets fetched per run | fetch s | tickets/s | used per run | runs that ran out |"
    echo "|---|---:|---:|---:|---:|---:|"
    for shape in gatehouse gatehouse-tls; do
        out=0
        for ((r = 1; r <= ROUNDS; r++)); do
            [[ $(jget "$RESULTS/$r-$shape.json" tickets_exhausted) == true ]] && out=$((out + 1))
        done
        printf '| %s | %s | %s | %s | %s | %s |\n' "$shape" \
            "$(fmt "$(cell "$shape" tickets_fetched)" 0)" "$(fmt "$(cell "$shape" tickets_fetch_s)" 2)" \
            "$(fmt "$(cell "$shape" tickets_per_s)" 0)" "$(fmt "$(cell "$shape" tickets_used)" 0)" "$out"
    done
} >"$TICKET_TABLE"

echo
cat "$TABLE"
echo
cat "$TARGETS"
echo
cat "$TICKET_TABLE"

# --- report -------------------------------------------------------------------
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem_total=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git status --porcelain 2>/dev/null | head -1) ]] && commit="$commit (with uncommitted changes)"
dante_version=$("$DANTED" -v 2>&1 | head -1)
mkdir -p "$(dirname "$REPORT")"
{
    echo "# SOCKS5 gateway comparison, $DATE"
    echo
    echo "Written by \`perf/socks_compare.sh\` (rounds started $STARTED_AT UTC). Only ratios measured"
    echo "side by side in one run mean anything on this machine: the load generator, the"
    echo "back-end, the gateways and the kernel share the same CPUs."
    echo
    echo "## Machine"
    echo
    echo "- CPUs: $(nproc) × $cpu_model"
    echo "- Memory: $mem_total"
    echo "- Kernel: $(uname -r)"
    echo "- Load average at start: $START_LOAD, at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows here)"
    echo "- Descriptor limit: $FD_LIMIT; net.ipv4.tcp_tw_reuse = $(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo '?')"
    echo
    echo "## Versions"
    echo
    echo "- $dante_version"
    echo "- $(haproxy -v 2>&1 | head -1)"
    echo "- $(rustc --version 2>&1)"
    echo "- gatehouse: $("$GATEHOUSE" --version 2>&1 | head -1) (binary of $(date -u -r "$GATEHOUSE" '+%Y-%m-%d %H:%M UTC')), commit $commit"
    echo
    echo "## Method"
    echo
    echo "$ROUNDS rounds; in each round every shape runs \`gatehouse-load connrate\` for ${SECONDS_PER_RUN} s"
    echo "(order of the others rotated per round, dante last; the next round starts ${DANTE_SETTLE} s after dante's run): $CONCURRENCY connections in flight, each: connect, [TLS handshake],"
    echo "[SOCKS5 greeting and CONNECT], 1 KiB written and echoed, close. Latency is the whole"
    echo "connection. Back-end: \`gatehouse-load echo\`. All servers run for the whole comparison."
    echo
    echo "- **dante**: \`danted -N $DANTE_PROCESSES\`, no authentication, no logging; CONNECT to 127.0.0.1:echo (ATYP 1)."
    echo "  Restarted before each run with a fresh external address, 127.0.0.(10 + round): danted binds its"
    echo "  outgoing connections to that address with port 0, and the TIME_WAIT sockets of an earlier run on"
    echo "  the same address would exhaust its ephemeral ports (dante then answers 03)."
    echo "- **gatehouse**: \`gatehouse run\` with \`[gateway] plaintext = true\`, \`[engine] cores = $GATEHOUSE_CORES\` (0 = one per CPU),"
    echo "  \`RUST_LOG=$GATEHOUSE_LOG\`; CONNECT with a fresh launch ticket per connection (ATYP 3), redeemed"
    echo "  over the channel by the local STA, then the engine connects the worker (the echo) and splices."
    echo "  Before each run the load tool fetches $TICKETS tickets over \`POST /scripts/ctxsta.dll\`"
    echo "  ($STA_CONNECTIONS keep-alive connections, one request at a time on each); this is not timed."
    echo "- **gatehouse-tls**: the same through a second \`gatehouse run\` with its TLS listener (generated"
    echo "  self-signed ECDSA P-256 certificate); TLS session resumption as the client and server negotiate."
    echo "- **haproxy-tls**: HAProxy, TCP mode, \`bind ... ssl crt\` with the same certificate and key, \`nbthread $HAPROXY_THREADS\`,"
    echo "  plain TCP to the echo; no SOCKS."
    echo "- **direct**: the load tool talks to the echo itself."
    echo
    echo "Cells are medians over rounds; ratio columns are medians of the per-round ratios"
    echo "(\"p99 ×…\" below 1 means lower latency)."
    echo
    echo "## Results"
    echo
    cat "$TABLE"
    echo
    echo "## Targets (issue 4)"
    echo
    cat "$TARGETS"
    echo
    echo "## Tickets"
    echo
    cat "$TICKET_TABLE"
    echo
    echo "## Raw runs"
    echo
    echo "| round | shape | conn/s | p50 / p99 / p999 µs | TLS resumed | errors |"
    echo "|---:|---|---:|---:|---:|---:|"
    for ((r = 1; r <= ROUNDS; r++)); do
        for shape in "${SHAPES[@]}"; do
            f=$RESULTS/$r-$shape.json
            printf '| %s | %s | %s | %s / %s / %s | %s | %s |\n' "$r" "$shape" \
                "$(fmt "$(jget "$f" conn_per_s)" 0)" "$(fmt "$(jget "$f" p50_us)" 0)" \
                "$(fmt "$(jget "$f" p99_us)" 0)" "$(fmt "$(jget "$f" p999_us)" 0)" \
                "$(jget "$f" tls_resumed)" "$(jget "$f" errors)"
        done
    done
} >"$REPORT"

say "report written to $REPORT"
