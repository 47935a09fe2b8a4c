#!/bin/sh
# Builds the libFuzzer target over the checkpoint decoders: tools/fuzz/.build/fuzz-checkpoint
# Usage: tools/fuzz/build.sh            (from anywhere)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$here/.build"
swiftc -O -g -parse-as-library -sanitize=fuzzer,address \
    -module-name FERCheckpointFuzz \
    -I "$root/Sources/CZlib" -lz \
    "$root"/Sources/FERCheckpoint/*.swift "$here/FuzzCheckpoint.swift" \
    -o "$here/.build/fuzz-checkpoint"
echo "built $here/.build/fuzz-checkpoint"
