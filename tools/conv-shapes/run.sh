#!/bin/sh
# Dense 3x3 convolution kernels against today's im2col + OpenBLAS path, per shape (see main.swift).
# Usage: tools/conv-shapes/run.sh              times every shape (ROUNDS=7 interleaved rounds)
#        tools/conv-shapes/run.sh callgrind    instruction counts per call under callgrind
# Compiles FERKernels as the release build does (-Ounchecked, -target-cpu haswell), then runs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../build-kernel-tool" "$here" conv-shapes
out="$here/.build"
if [ "${1:-}" != callgrind ]; then exec "$out/conv-shapes"; fi

# Instructions per call: (run with 1 + R calls) - (run with 1 call), over R; one call warms up.
count() {  # method shape reps -> total instructions
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$out/conv-shapes" --only "$1" "$2" "$3" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
reps=3
printf 'shape\tmethod\tinstructions_per_call\n'
for shape in ${SHAPES:-0 1 2 3 4 5 6 7 8 9 10 11 12}; do
    for method in blas packed lowered indirect; do
        one=$(count "$method" "$shape" 1)
        many=$(count "$method" "$shape" $((1 + reps)))
        printf '%s\t%s\t%s\n' "$shape" "$method" $(( (many - one) / reps ))
    done
done
