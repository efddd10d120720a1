#!/bin/sh
# hypervisor-sim: a power hook for tests and demos. "Powers on" a worker by
# starting a vda-sim that registers with the broker under the worker's name.
#
#   power-on.sh WORKER BROKER_URL STATE_DIR [VDA_SIM]
#
# Configure it per delivery group, e.g.
#   power_on_command = ["tools/hypervisor-sim/power-on.sh", "{worker}",
#                       "http://127.0.0.1:8080", "/tmp/hv"]
# The vda-sim listens on ephemeral loopback ports, heartbeats every second,
# and runs in the background; its PID is written to STATE_DIR/WORKER.pid and
# its announce line to STATE_DIR/WORKER.addr, so whoever started the broker
# stops it by PID. Exits 0 once the process is started, 2 on bad arguments.
set -eu
if [ $# -lt 3 ]; then
    echo "usage: power-on.sh WORKER BROKER_URL STATE_DIR [VDA_SIM]" >&2
    exit 2
fi
worker=$1
url=$2
state=$3
sim=${4:-vda-sim}
mkdir -p "$state"
"$sim" --ica-listen 127.0.0.1:0 --cgp-listen 127.0.0.1:0 --announce \
    --register "$url" --worker-name "$worker" --heartbeat-secs 1 \
    >"$state/$worker.addr" 2>/dev/null </dev/null &
echo $! >"$state/$worker.pid"
