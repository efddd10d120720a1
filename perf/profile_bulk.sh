#!/usr/bin/env bash
# perf/profile_bulk.sh: where the CPU goes in the bulk shape, direct and
# through `gatehouse forward`, on this machine. Answers "how much of the gap
# to direct loopback is the relay's own work, and how much is the kernel's
# second TCP hop" with numbers, not guesses.
#
# For each path (direct, gatehouse forward) it runs `gatehouse-load stream`
# (4 connections x 64 KiB writes) and samples every CPU with `perf record -a`
# for PROFILE_SECONDS in the middle of the run, then prints:
#   - Gbit/s at the sink and the machine's busy fraction (from /proc/stat);
#   - the CPU share of each process (sender, sink, relay cores);
#   - for the relay's cores: kernel vs user-space share, the splice system
#     call's own functions vs the rest of the kernel (the TCP/IP stack);
#   - CPU time per Gbit/s of each run and party, and the ceiling: the
#     ratio to direct that a relay paying nothing but a second TCP/IP path
#     (as cheap as direct's own) could reach, from direct's copy share.
#
# Knobs (environment): SECONDS_PER_RUN (6), PROFILE_SECONDS (4), CORES (2),
# PORT_BASE (23300), SKIP_BUILD (0), REPORT (perf/reports/<date>-bulk-profile.md, or -2, -3 ... when taken).
# Needs `perf` (Debian package linux-perf; installed when missing) and
# perf_event_paranoid <= 2 with root, or -1. Every process it starts is
# stopped by PID on exit. Run time: about 30 s plus the build.
set -euo pipefail

SECONDS_PER_RUN=${SECONDS_PER_RUN:-6}
PROFILE_SECONDS=${PROFILE_SECONDS:-4}
CORES=${CORES:-2}
PORT_BASE=${PORT_BASE:-23300}
SKIP_BUILD=${SKIP_BUILD:-0}

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
# shellcheck source=perf/lib.sh
source "$REPO/perf/lib.sh"
DATE=$(date -u +%Y-%m-%d)
REPORT=${REPORT:-$(free_report "perf/reports/$DATE-bulk-profile")}
LOAD=$REPO/target/release/gatehouse-load
GATEHOUSE=$REPO/target/release/gatehouse
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-profile.XXXXXX")
SINK_PORT=$((PORT_BASE + 1))
RELAY_PORT=$((PORT_BASE + 2))

cleanup() {
    stop_all
    [[ ${KEEP_WORK:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
raise_fd_limit

if [[ $SKIP_BUILD != 1 ]]; then
    say "cargo build --release -p gatehouse-perf -p gatehouse"
    cargo build --release -p gatehouse-perf -p gatehouse
fi
if ! command -v perf >/dev/null 2>&1; then
    say "installing linux-perf"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq linux-perf || { apt-get update -qq && apt-get install -y -qq linux-perf; }
fi

"$LOAD" sink --listen "127.0.0.1:$SINK_PORT" >/dev/null 2>>"$WORK/sink.log" &
STARTED+=($!)
RUST_LOG=warn "$GATEHOUSE" forward --listen "127.0.0.1:$RELAY_PORT" --to "127.0.0.1:$SINK_PORT" \
    --cores "$CORES" >/dev/null 2>>"$WORK/forward.log" &
STARTED+=($!)
wait_port "$SINK_PORT" && wait_port "$RELAY_PORT"

cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $6 + $7 + $8, $5 }' /proc/stat; }

# share FILE COMMS [SORT]: perf report lines "PCT KEY" for the given comms.
share() {
    local data=$1 comms=$2 sort=${3:-comm}
    perf report -i "$data" --no-children --percentage relative --comms "$comms" --sort "$sort" -g none 2>/dev/null |
        awk '/%/ && !/^#/ { sub(/%/, "", $1); print }'
}

# profile NAME TARGET: one stream run with a profile in its middle; sets
# GBPS_<NAME> and BUSY_<NAME>, leaves $WORK/NAME.data.
declare -A GBPS BUSY
profile() {
    local name=$1 target=$2 b1 i1 b2 i2
    "$LOAD" --json stream --target "$target" --seconds "$SECONDS_PER_RUN" >"$WORK/$name.json" &
    local load=$!
    sleep 1
    read -r b1 i1 < <(cpu_ticks)
    perf record -a -g -F 999 -o "$WORK/$name.data" -- sleep "$PROFILE_SECONDS" 2>>"$WORK/perf.log" >/dev/null
    read -r b2 i2 < <(cpu_ticks)
    wait "$load"
    GBPS[$name]=$(jget "$WORK/$name.json" gbps)
    BUSY[$name]=$(awk -v b=$((b2 - b1)) -v i=$((i2 - i1)) 'BEGIN { printf "%.2f", b / (b + i) }')
    say "$name: ${GBPS[$name]} Gbit/s, machine busy ${BUSY[$name]}"
}

profile direct "127.0.0.1:$SINK_PORT"
profile forward "127.0.0.1:$RELAY_PORT"

# Per process (comm names: gatehouse-load = sender main thread,
# gatehouse-load-* = the sink's and the stream's worker threads,
# gatehouse-core-* = the relay's cores).
by_comm() { perf report -i "$1" --no-children --sort comm -g none 2>/dev/null |
    awk '/%/ && !/^#/ { sub(/%/, "", $1); c = $2; for (i = 3; i <= NF; i++) c = c " " $i; if ($1 >= 0.5) printf "| %s | %s |\n", c, $1 }'; }
RELAY_COMM=gatehouse-core-
# Kernel share of the relay cores' samples (a comm,dso split: perf's dso
# view under a comm filter drops the kernel's line).
KERNEL=$(perf report -i "$WORK/forward.data" --no-children --sort comm,dso -g none 2>/dev/null |
    awk -v c="$RELAY_COMM" '/%/ && !/^#/ && $2 == c { sub(/%/, "", $1); t += $1; if ($3 ~ /^\[kernel/) k += $1 }
        END { if (t > 0) printf "%.1f", 100 * k / t }')
SPLICE=$(share "$WORK/forward.data" "$RELAY_COMM" sym | awk '$3 ~ /splice|pipe_buf|pipe_/ { s += $1 } END { printf "%.2f", s }')
# comm_total FILE REGEX: the share of all samples of the comms matching
# REGEX (empty when none has a sample).
comm_total() { perf report -i "$1" --no-children --sort comm -g none 2>/dev/null |
    awk -v c="$2" '/%/ && !/^#/ && $2 ~ c { sub(/%/, "", $1); t += $1; n++ } END { if (n) printf "%.2f", t }'; }
RELAY_TOTAL=$(comm_total "$WORK/forward.data" "^$RELAY_COMM\$")
TOP=$(share "$WORK/forward.data" "$RELAY_COMM" sym | awk 'NR <= 15' | awk '{ printf "| %s | %s |\n", $3, $1 }')
# The load tool's share of the relayed run (sender and sink, every thread).
LOAD_TOTAL=$(comm_total "$WORK/forward.data" '^gatehouse-load')
# The two user copies' share of the direct run: the kernel's copy routines
# and the hardened-usercopy checks that go with them.
COPY_SHARE=$(perf report -i "$WORK/direct.data" --no-children --sort sym -g none 2>/dev/null |
    awk '/%/ && !/^#/ { sub(/%/, "", $1) } $3 ~ /^(_copy_from_iter|_copy_to_iter|copy_user_generic|rep_movs_alternative|rep_movs|__check_object_size|__virt_addr_valid|check_heap_object)$/ { t += $1 }
        END { printf "%.1f", t }')

# CPU time per Gbit/s at the sink of each run and party (busy CPUs x share
# / Gbit/s), and the ceiling. Direct's cost per byte D = C (the sender's and
# the sink's user copies) + H (the rest: the TCP/IP path, system calls,
# wake-ups). A relay that terminates both TCP connections copies nothing
# but runs a second TCP/IP path, at best as cheap as the first: at best
# D / (C + 2H) = 1 / (2 - C/D) of direct, whatever its own code does.
CEILING=$(awk -v cpus="$(nproc)" -v bf="${BUSY[forward]}" -v bd="${BUSY[direct]}" \
    -v gf="${GBPS[forward]}" -v gd="${GBPS[direct]}" -v load="$LOAD_TOTAL" \
    -v relay="${RELAY_TOTAL:-0}" -v copy="$COPY_SHARE" 'BEGIN {
        if (gf <= 0 || gd <= 0 || copy <= 0) { print "n/a n/a n/a n/a n/a"; exit }
        printf "%.4f %.4f %.4f %.4f %.2f\n", cpus * bd / gd, cpus * bf / gf,
            cpus * bf * load / 100 / gf, cpus * bf * relay / 100 / gf, 1 / (2 - copy / 100) }')
read -r COST_DIRECT COST_FORWARD COST_LOAD COST_RELAY CEILING_RATIO <<<"$CEILING"

{
    echo "# Bulk profile, $DATE"
    echo
    echo "Written by \`perf/profile_bulk.sh\` ($(date -u +%H:%M) UTC). \`gatehouse-load stream\`, 4 connections"
    echo "of 64 KiB writes, ${SECONDS_PER_RUN} s; \`perf record -a -g -F 999\` for ${PROFILE_SECONDS} s in the middle."
    echo "Machine: $(nproc) CPUs, $(uname -r); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Relay: \`gatehouse forward --cores $CORES\` (relay auto: splice once a direction is bulk)."
    echo
    echo "| path | Gbit/s at the sink | machine busy (both CPUs = 1.00) |"
    echo "|---|---:|---:|"
    echo "| direct | ${GBPS[direct]} | ${BUSY[direct]} |"
    echo "| gatehouse forward | ${GBPS[forward]} | ${BUSY[forward]} |"
    echo
    echo "Ratio forward/direct: $(ratio "${GBPS[forward]}" "${GBPS[direct]}") (one run each, while \`perf\` samples: a"
    echo "profile, not a comparison; the side-by-side figures are \`perf/compare.sh\`'s)."
    echo
    echo "## Where the CPU goes through the relay (share of all samples)"
    echo
    echo "| process (thread name) | % |"
    echo "|---|---:|"
    by_comm "$WORK/forward.data"
    echo
    echo "Of the relay cores' samples (${RELAY_TOTAL:-n/a}% of all): ${KERNEL:-n/a}% in the kernel;"
    echo "the splice/pipe functions themselves are ${SPLICE}% of the relay cores' samples; the rest of the"
    echo "kernel time is the TCP/IP stack of the second loopback hop (transmit to the sink and, in the"
    echo "same softirq, the sink side's receive processing) that a direct connection does not have."
    echo
    echo "## The ceiling this machine puts on any relay"
    echo
    echo "CPU time per Gbit/s at the sink (busy CPUs × share ÷ Gbit/s):"
    echo
    echo "| run, party | CPU-s per Gbit |"
    echo "|---|---:|"
    echo "| direct, all | $COST_DIRECT |"
    echo "| through the relay, all | $COST_FORWARD |"
    echo "| through the relay, the load tool (sender and sink; ${LOAD_TOTAL}% of the samples) | $COST_LOAD |"
    echo "| through the relay, the relay cores | $COST_RELAY |"
    echo
    echo "In the direct run ${COPY_SHARE}% of the CPU time is the two user copies (the sender's into"
    echo "the kernel, the sink's out of it); the rest is the TCP/IP path (system calls, segments out"
    echo "and in, ACKs, wake-ups). A relay that terminates both TCP connections copies nothing but"
    echo "runs a second TCP/IP path, at best as cheap as the first, so at best it reaches"
    echo "1 / (2 − copy share) = **${CEILING_RATIO}× direct** on this machine, whatever its own code"
    echo "does (a model with one measured input, not a measurement)."
    echo
    echo "Top kernel and user functions on the relay cores (% of the relay cores' samples):"
    echo
    echo "| function | % |"
    echo "|---|---:|"
    echo "$TOP"
    echo
    echo "## Direct, for reference (share of all samples)"
    echo
    echo "| process (thread name) | % |"
    echo "|---|---:|"
    by_comm "$WORK/direct.data"
} >"$REPORT"
cat "$REPORT"
say "report written to $REPORT"
