#!/bin/sh
# Builds the libFuzzer target over image decoding: tools/fuzz/.build/fuzz-image
# Usage: tools/fuzz/build-image.sh      (from anywhere; needs clang, libspng-dev, libjpeg62-turbo-dev, zlib)
# FERTensor is compiled first as a module of its own (FERImage imports it), with AddressSanitizer; the
# CJPEG shim with clang, with AddressSanitizer and libFuzzer's coverage; then the sources of FERImage
# and FuzzImage.swift as one instrumented module, linked against the system libspng, libjpeg and zlib
# (not instrumented: what they do wrong shows as a crash or an ASan report in our calls).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/.build/image"
mkdir -p "$out"
swiftc -O -g -parse-as-library -sanitize=address -module-name FERTensor \
    -emit-library -static -emit-module -emit-module-path "$out/FERTensor.swiftmodule" \
    "$root"/Sources/FERTensor/*.swift -o "$out/libFERTensor.a"
clang -O1 -g -fsanitize=fuzzer-no-link,address -I "$root/Sources/CJPEG/include" \
    -c "$root/Sources/CJPEG/CJPEG.c" -o "$out/CJPEG.o"
swiftc -O -g -parse-as-library -sanitize=fuzzer,address -module-name FERImageFuzz \
    -I "$out" -I "$root/Sources/CSpng" -I "$root/Sources/CJPEG/include" -I "$root/Sources/CZlib" \
    "$root"/Sources/FERImage/*.swift "$here/FuzzImage.swift" "$out/CJPEG.o" \
    -L "$out" -lFERTensor -lspng -ljpeg -lz \
    -o "$here/.build/fuzz-image"
echo "built $here/.build/fuzz-image"
