#!/usr/bin/env bash
# Rebuilds the Rust test programs for wasm32-wasi (the target's name before
# Rust 1.78 renamed it wasm32-wasip1; the same ABI). Needs a rustc with that
# target's standard library: rustup's `rustup target add wasm32-wasip1`, or
# Debian's rustc and libstd-rust-dev-wasm32 (with wasi-libc and lld). The
# .wasm outputs are committed, so tests do not need a Wasm toolchain.
set -euo pipefail
cd "$(dirname "$0")"
RUSTC=${RUSTC:-rustc}
# The first of the two names whose standard library this rustc has.
sysroot=$("$RUSTC" --print sysroot)
target=
for name in wasm32-wasip1 wasm32-wasi; do
    if [ -d "$sysroot/lib/rustlib/$name/lib" ]; then target=$name; break; fi
done
if [ -z "$target" ]; then
    echo "$RUSTC has no standard library for wasm32-wasip1 or wasm32-wasi" >&2
    exit 1
fi
for source in *.rs; do
    "$RUSTC" --edition 2021 --target "$target" -C opt-level=2 -C strip=debuginfo \
        -o "${source%.rs}.wasm" "$source"
done
