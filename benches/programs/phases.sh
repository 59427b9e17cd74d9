#!/usr/bin/env bash
# Times each phase of `quicksort` and `lz77`, natively and under
# `backstop run`, for BENCHMARKS.md ("the remaining gap, phase by phase").
#
# For every phase n it builds the program stopped at the end of phase n
# (-DSTOP_AFTER=n; see PHASE_END in the sources), plus the whole program,
# natively (clang-14 -O2) and for wasm32-wasi (as build.sh does). Each
# prefix is timed as a whole process with hyperfine (median of $RUNS runs,
# default 5), and a phase's time is the difference of two prefixes, so
# process start-up and Backstop's compile time cancel out (the first
# phase keeps them). Phases of a few milliseconds are within the noise of
# whole-process timing (raise RUNS, or time them in-process). Needs
# clang-14 with the wasm32-wasi target, hyperfine and python3.
# Usage: benches/programs/phases.sh   (RUNS=10 took 80 s here)
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
cargo build --quiet --release -p backstop-cli --manifest-path "$root/Cargo.toml"
backstop="${CARGO_TARGET_DIR:-$root/target}/release/backstop"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=${RUNS:-5}

# The median wall time of a command, in milliseconds.
median_ms() {
    hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/time.json" "$1" \
        >/dev/null 2>"$work/hyperfine.log" || { cat "$work/hyperfine.log" >&2; exit 1; }
    python3 -c 'import json, sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1000))' "$work/time.json"
}

# phases PROGRAM NAME... : one name per phase, the last one running to the end.
phases() {
    local program=$1
    shift
    local names=("$@") count=$#
    local prev_native=0 prev_backstop=0
    echo
    echo "| \`$program\` phase | native (ms) | Backstop (ms) | ratio |"
    echo "|---|---|---|---|"
    for ((n = 1; n <= count; n++)); do
        local define=()
        ((n < count)) && define=(-DSTOP_AFTER=$n)
        clang-14 -O2 "${define[@]}" -o "$work/native" "$program.c"
        clang-14 --target=wasm32-wasi -O2 -Wl,--strip-debug "${define[@]}" -o "$work/guest.wasm" "$program.c"
        local native backstop_ms
        native=$(median_ms "$work/native")
        backstop_ms=$(median_ms "$backstop run $work/guest.wasm")
        python3 -c 'import sys
name, n, pn, b, pb = sys.argv[1], *map(float, sys.argv[2:])
# Differences of a few ms are within whole-process noise: no ratio.
ratio = "%.2f" % ((b - pb) / (n - pn)) if n - pn >= 20 and b - pb >= 20 else "(too short)"
print("| %s | %.1f | %.1f | %s |" % (name, n - pn, b - pb, ratio))' \
            "${names[n - 1]}" "$native" "$prev_native" "$backstop_ms" "$prev_backstop"
        prev_native=$native
        prev_backstop=$backstop_ms
    done
}

phases quicksort "fill (with process start; Backstop: and compile)" "sort" "order check and checksum"
phases lz77 "generate the text (with process start; Backstop: and compile)" "compress" "decompress" "memcmp" "checksum"
