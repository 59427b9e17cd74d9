#!/usr/bin/env bash
# Rebuilds the benchmark programs used by benches/programs.rs from their C
# sources. Needs Debian's clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32.
# The .wasm outputs are committed; the native builds go to
# target/programs-native/ (benches/programs.rs also rebuilds them there
# itself before it measures, with the same flags).
set -euo pipefail
cd "$(dirname "$0")"
native_dir=../../target/programs-native
mkdir -p "$native_dir"
for source in *.c; do
    name="${source%.c}"
    # --strip-debug drops the DWARF that wasi-libc's objects carry; the
    # name section stays.
    clang-14 --target=wasm32-wasi -O2 -Wl,--strip-debug -o "$name.wasm" "$source"
    clang-14 -O2 -o "$native_dir/$name" "$source"
done
