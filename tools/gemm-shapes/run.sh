#!/bin/sh
# Per-shape timing of PackedGEMM against OpenBLAS (see main.swift), on one thread.
# Usage: tools/gemm-shapes/run.sh   (compiles FERKernels as the release build does, then runs)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/../build-kernel-tool" "$here" gemm-shapes
out="$here/.build"
"$out/gemm-shapes"
