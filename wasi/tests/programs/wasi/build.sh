#!/usr/bin/env bash
# Rebuilds the WASI test programs from their C sources. Needs Debian's
# clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32. The .wasm outputs are
# committed, so tests do not need clang.
set -euo pipefail
cd "$(dirname "$0")"
for source in *.c; do
    clang-14 --target=wasm32-wasi -O2 -o "${source%.c}.wasm" "$source"
done
