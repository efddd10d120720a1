#!/usr/bin/env bash
# perf/s2c_throughput.sh: throughput of allowed server-to-client flows on
# loopback, several rounds, median per cell; prints a table and writes
# perf/reports/<date>-s2c.md.
#
# Path measured (the whole server-to-client data path):
#   gatehouse-load stream (the back-end server, from 127.0.0.1)
#     -> IIP:5900 on a connector core of `gatehouse run` (splice)
#     -> the core's rendezvous listener <- gateway core (SOCKS5 launch, TLS
#        terminated, pooled copy) <- access-client (TLS, tokio copy)
#     -> gatehouse-load sink (the service on the client, 127.0.0.1)
# and, for reference, the same stream straight to the sink (direct).
# With CONNECTOR=process the IIP is owned by a `gatehouse connector` process
# of its own (a `[[server_to_client.connectors]]` segment of `gatehouse run`)
# instead of the cores of `gatehouse run`.
#
# Knobs (environment): ROUNDS (3), SECONDS_PER_RUN (6), CONNECTIONS (1),
# PORT_BASE (23400), GATEHOUSE_CORES (1), CONNECTOR (cores | process),
# SKIP_BUILD (0), REPORT (perf/reports/<date>-s2c.md, or -s2c-connector.md),
# BIN_DIR (target/release), GATEHOUSE_LOG (warn).
#
# Every process it starts is stopped by PID on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-6}
CONNECTIONS=${CONNECTIONS:-1}
PORT_BASE=${PORT_BASE:-23400}
GATEHOUSE_CORES=${GATEHOUSE_CORES:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
GATEHOUSE_LOG=${GATEHOUSE_LOG:-warn}
CONNECTOR=${CONNECTOR:-cores}
[[ $CONNECTOR == cores || $CONNECTOR == process ]] || { echo "CONNECTOR must be cores or process" >&2; exit 1; }

((ROUNDS >= 1 && ROUNDS <= 50)) || { echo "ROUNDS must be 1 to 50" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
# shellcheck source=perf/lib.sh
source "$REPO/perf/lib.sh"
DATE=$(date -u +%Y-%m-%d)
if [[ $CONNECTOR == process ]]; then
    REPORT=${REPORT:-$(free_report "perf/reports/$DATE-s2c-connector")}
else
    REPORT=${REPORT:-$(free_report "perf/reports/$DATE-s2c")}
fi
BIN_DIR=${BIN_DIR:-$REPO/target/release}
LOAD=$BIN_DIR/gatehouse-load
GATEHOUSE=$BIN_DIR/gatehouse
CLIENT=$BIN_DIR/access-client
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-s2c.XXXXXX")
SHM=gatehouse-perf-s2c-$$
trap 'stop_all; rm -rf "$WORK"; rm -f "/dev/shm/$SHM" "/dev/shm/$SHM.link"' EXIT

if [[ $SKIP_BUILD != 1 ]]; then
    say "building (release)"
    cargo build --release --quiet -p gatehouse -p gatehouse-access-client -p gatehouse-perf \
        --bin gatehouse --bin access-client --bin gatehouse-load
fi

SINK=$((PORT_BASE))
GATEWAY=$((PORT_BASE + 1))
ADMIN=$((PORT_BASE + 2))
IIP=127.78.0.1
APP_PORT=5900

"$LOAD" sink --listen "127.0.0.1:$SINK" >"$WORK/sink.log" 2>&1 &
STARTED+=($!)
wait_port "$SINK"

if [[ $CONNECTOR == process ]]; then
    OWNER=$(printf '[[server_to_client.connectors]]\nname = "site"\nshm = "%s"\ncores = %s\n' "$SHM" "$GATEHOUSE_CORES")
    OWNED='connectors = ["site"]'
else
    OWNER=""
    OWNED=""
fi
cat >"$WORK/gatehouse.toml" <<EOF
[engine]
cores = $GATEHOUSE_CORES
drain_secs = 1
[server_to_client]
$OWNER
[[server_to_client.pools]]
name = "perf"
location = "loopback"
cidr = "$IIP/32"
$OWNED
[[server_to_client.apps]]
name = "stream"
servers = ["127.0.0.0/8"]
ports = [$APP_PORT]
[policy]
server_to_client_default = "allow"
EOF
PASSWORD=perf-password-123
echo "$PASSWORD" | "$GATEHOUSE" user --config "$WORK/gatehouse.toml" --data-dir "$WORK/data" add perf >/dev/null
RUST_LOG=$GATEHOUSE_LOG "$GATEHOUSE" run --config "$WORK/gatehouse.toml" --data-dir "$WORK/data" \
    --gateway-listen "127.0.0.1:$GATEWAY" --admin-listen "127.0.0.1:$ADMIN" >"$WORK/gatehouse.log" 2>&1 &
STARTED+=($!)
wait_port "$GATEWAY"
if [[ $CONNECTOR == process ]]; then
    RUST_LOG=info "$GATEHOUSE" connector --shm "$SHM" --name site --config "$WORK/gatehouse.toml" \
        --cores "$GATEHOUSE_CORES" >"$WORK/connector.log" 2>&1 &
    STARTED+=($!)
    for ((i = 0; i < 100; i++)); do
        grep -q connector_ready "$WORK/connector.log" && break
        sleep 0.1
    done
    grep -q connector_ready "$WORK/connector.log" || { say "connector not ready"; cat "$WORK/connector.log" >&2; exit 1; }
fi

ACCESS_PASSWORD=$PASSWORD "$CLIENT" --gateway "127.0.0.1:$GATEWAY" --ca "$WORK/data/tls/gateway.crt" \
    --server-name localhost --user perf --forward "$APP_PORT=127.0.0.1:$SINK" >"$WORK/client.log" 2>&1 &
STARTED+=($!)
for ((i = 0; i < 100; i++)); do
    grep -q "^control iip=$IIP" "$WORK/client.log" && break
    sleep 0.1
done
grep -q "^control iip=$IIP" "$WORK/client.log" || { say "access client did not connect"; cat "$WORK/client.log" >&2; exit 1; }

run() { # run NAME TARGET ROUND: one stream run, its JSON in $WORK
    "$LOAD" --json stream --target "$2" --connections "$CONNECTIONS" \
        --seconds "$SECONDS_PER_RUN" >"$WORK/$1-$3.json" 2>"$WORK/$1-$3.err" || true
}

for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round/$ROUNDS"
    run direct "127.0.0.1:$SINK" "$round"
    run s2c "$IIP:$APP_PORT" "$round"
done

cell() { # cell NAME KEY: the median of KEY over the rounds
    local round
    for ((round = 1; round <= ROUNDS; round++)); do jget "$WORK/$1-$round.json" "$2"; done | median
}
DIRECT=$(cell direct gbps)
S2C=$(cell s2c gbps)
CONFIRMED=$(jget "$WORK/s2c-1.json" sink_confirmed)
FLOWS=$(grep -c "^flow=" "$WORK/client.log" || true)

TABLE=$(cat <<EOF
| path | Gbit/s (median of $ROUNDS) |
|---|---|
| direct (load -> sink) | $(fmt "$DIRECT" 2) |
| server-to-client (load -> connector ($CONNECTOR) -> gateway TLS -> access-client -> sink) | $(fmt "$S2C" 2) |
EOF
)
printf '%s\n\nratio s2c/direct: %s; sink confirmed: %s; flows seen by the client: %s\n' \
    "$TABLE" "$(ratio "$S2C" "$DIRECT")" "$CONFIRMED" "$FLOWS"

mkdir -p "$(dirname "$REPORT")"
{
    echo "# Server-to-client throughput, $DATE"
    echo
    echo "\`perf/s2c_throughput.sh\`: $CONNECTIONS connection(s), $SECONDS_PER_RUN s per run, $ROUNDS rounds,"
    echo "gatehouse cores = $GATEHOUSE_CORES, connector = $CONNECTOR (cores: the connector role on the cores of"
    echo "\`gatehouse run\`; process: a \`gatehouse connector\` process of its own), $(nproc) CPUs shared by every"
    echo "process of the run."
    echo
    echo "$TABLE"
    echo
    echo "ratio s2c/direct: $(ratio "$S2C" "$DIRECT"); sink confirmed (half-close carried end to end): $CONFIRMED"
} >"$REPORT"
say "report: $REPORT"
