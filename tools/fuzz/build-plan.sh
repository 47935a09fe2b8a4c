#!/bin/sh
# Builds the libFuzzer target over plan building: tools/fuzz/.build/fuzz-plan
# (the engine's modules compiled with coverage and AddressSanitizer, one static library each).
# Usage: tools/fuzz/build-plan.sh            (from anywhere)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/.build/plan"
mkdir -p "$out"
common="-O -g -parse-as-library -target-cpu haswell -I $out -I $root/Sources/CZlib -I $root/Sources/COpenBLAS"
flags="$common -sanitize=fuzzer,address"
module() {  # module NAME SANITIZERS [FLAGS]: Sources/NAME/*.swift -> $out/libNAME.a + NAME.swiftmodule
    swiftc $common ${3:-} -sanitize="$2" -emit-library -static -emit-module -module-name "$1" \
        -emit-module-path "$out/$1.swiftmodule" "$root/Sources/$1"/*.swift -o "$out/lib$1.a"
}
# -target-cpu as in Package.swift: without it SIMD fused multiply-adds become libm calls.
# The numeric modules get AddressSanitizer only: coverage and comparison tracing in their inner
# loops would make each execution 10 times slower and guide nothing (their branches do not
# depend on shapes the fuzzer controls beyond what the engine already checks).
module FERTensor address
# The AVX-512 tiles as Package.swift compiles them (the engine picks them at run time where the CPU has them).
module FERKernelsAVX512 address "-target-cpu skylake-avx512 -D FER_AVX512"
module FERKernels address
module FERCheckpoint fuzzer,address
module FEREngine fuzzer,address
swiftc $flags "$here/FuzzPlan.swift" -L "$out" -lFEREngine -lFERKernels -lFERKernelsAVX512 -lFERCheckpoint -lFERTensor -lopenblas -lz \
    -o "$here/.build/fuzz-plan"
echo "built $here/.build/fuzz-plan"
