#!/usr/bin/env bash
# Builds every fuzz target of one fuzz package (dataplane/wire/fuzz,
# controlplane/fuzz) with libFuzzer coverage instrumentation on the stable
# toolchain, then runs each one for a bounded time.
# Usage: tools/fuzz/run.sh FUZZ_DIR [--seconds N] [--build-only] [TARGET...]
#
# cargo-fuzz needs nightly for its sanitizer flags; the coverage flags used
# here are stable, so this works with the pinned toolchain (no ASan: the
# crates forbid unsafe code, so memory errors are not what we hunt here —
# panics, overflows and broken invariants are).
set -euo pipefail
here="$(cd "${1:?usage: run.sh FUZZ_DIR [--seconds N] [--build-only] [TARGET...]}" && pwd)"
shift
seconds=5
build_only=0
targets=()
while (($#)); do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --build-only) build_only=1; shift ;;
        *) targets+=("$1"); shift ;;
    esac
done
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' "$here/Cargo.toml" | tail -n +2)
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
export RUSTFLAGS="--cfg fuzzing -Cdebug-assertions -Coverflow-checks \
-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
# An explicit --target keeps RUSTFLAGS off build scripts (they must not be
# instrumented: nothing links libFuzzer into them).
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --manifest-path "$here/Cargo.toml" --bins --target "$host"
((build_only)) && exit 0

for t in "${targets[@]}"; do
    corpus="$here/corpus/$t"
    mkdir -p "$corpus" "$here/artifacts/$t"
    printf '%-28s ' "$t"
    "$CARGO_TARGET_DIR/$host/release/$t" "$corpus" -max_total_time="$seconds" \
        -artifact_prefix="$here/artifacts/$t/" -print_final_stats=1 2>"$here/artifacts/$t.log" \
        || { echo "FAILED (see $here/artifacts/$t.log)"; tail -40 "$here/artifacts/$t.log"; exit 1; }
    grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$here/artifacts/$t.log" | awk '{print $2 " runs, ok"}'
done
