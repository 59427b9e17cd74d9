#!/usr/bin/env bash
# Rebuilds divide.wasm from divide.c with DWARF line info. Needs Debian's
# clang-14 and lld-14. The output is committed, so tests do not need clang.
set -euo pipefail
cd "$(dirname "$0")"
clang-14 --target=wasm32 -g -O1 -nostdlib -Wl,--no-entry -o divide.wasm divide.c
