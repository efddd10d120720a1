# shellcheck shell=bash
# perf/lib.sh: helpers shared by the perf scripts (sourced, not run).
# Process bookkeeping (every PID a script starts is stopped by PID on exit),
# port waits, and the small JSON/number helpers the reports are built with.

say() { printf '==> %s\n' "$*" >&2; }

# --- process bookkeeping: every PID we start, stopped on exit ---------------
STARTED=()
stop_pid() { # stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
}
stop_all() { # stops every PID in STARTED
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    STARTED=()
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT
# (WAIT_PORT_SECONDS, 10 s by default).
wait_port() {
    local port=$1 seconds=${WAIT_PORT_SECONDS:-10} i
    for ((i = 0; i < seconds * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    say "nothing listens on 127.0.0.1:$port after $seconds s"
    return 1
}

# raise_fd_limit: relays and back-ends hold many descriptors; sets FD_LIMIT.
raise_fd_limit() {
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    # shellcheck disable=SC2034 # read by the scripts that source this file
    FD_LIMIT=$(ulimit -n)
}

# --- reading the load tool's flat JSON and summarizing numbers ---------------
jget() { # jget FILE KEY: the value of KEY, empty when absent or null
    [[ -s $1 ]] || return 0
    sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | tr -d '"' | sed 's/^null$//' || true
}
int() { local v; v=$(jget "$1" "$2"); echo "${v:-0}"; }
median() { # median of the numbers on stdin (nothing when there are none)
    { grep -E '^[0-9.eE+-]+$' || true; } | sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 != 0) printf "%.2f", a / b }'; }
fmt() { # fmt VALUE DECIMALS: a number or "n/a"
    if [[ -n $1 ]]; then awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; else printf 'n/a'; fi
}
pass_if() { # pass_if VALUE OP LIMIT -> PASS / FAIL / n/a
    [[ -z $1 ]] && { echo "n/a"; return; }
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
        ok = (op == ">=") ? (v >= l) : (v <= l); print ok ? "PASS" : "FAIL" }'
}
free_report() { # free_report BASE: BASE.md, or BASE-2.md, BASE-3.md, ... whichever does not exist yet
    local path=$1.md n=2
    while [[ -e $path ]]; do
        path=$1-$n.md
        n=$((n + 1))
    done
    echo "$path"
}
