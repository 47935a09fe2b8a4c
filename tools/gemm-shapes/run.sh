#!/bin/sh
# Per-shape timing of PackedGEMM against OpenBLAS (see main.swift), on one thread.
# Usage: tools/gemm-shapes/run.sh   (compiles FERKernels as the release build does, then runs)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/.build"
rm -rf "$out"; mkdir -p "$out"
cpu="${FER_TARGET_CPU:-haswell}"
swiftc -Ounchecked -wmo -target-cpu "$cpu" -parse-as-library -emit-library -static -emit-module -module-name FERKernels \
    -I "$root/Sources/COpenBLAS" -emit-module-path "$out/FERKernels.swiftmodule" "$root/Sources/FERKernels"/*.swift \
    -o "$out/libFERKernels.a"
swiftc -O -target-cpu "$cpu" -I "$out" -I "$root/Sources/COpenBLAS" "$here/main.swift" -L "$out" -lFERKernels -lopenblas \
    -o "$out/gemm-shapes"
"$out/gemm-shapes"
