#!/bin/sh
# Builds the libFuzzer target over fer-serve's request bodies: tools/fuzz/.build/fuzz-serve
# Usage: tools/fuzz/build-serve.sh      (from anywhere; runs the release build first if its modules are missing)
# The body-reading sources of Sources/FERServe (Multipart, HeaderValue, ServiceError, BodyReader,
# BodyBudget, RequestBodyGuard) and FuzzServe.swift are compiled as one module with libFuzzer's
# coverage and AddressSanitizer. SwiftNIO (its HTTP/1 decoder is llhttp) and swift-http-types are linked
# from the release build, not instrumented: what they do wrong shows as a crash or an ASan report in our
# calls, or a failed check in FuzzServe.swift.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$here/.build/serve"
cd "$root"
release=$(swift build -c release --show-bin-path)
[ -f "$release/Modules/NIOEmbedded.swiftmodule" ] && [ -f "$release/Modules/NIOHTTPTypesHTTP1.swiftmodule" ] ||
    swift build -c release --build-tests
mkdir -p "$out"
# The release build's objects of every module the target needs (directly or through another), linked
# whole as SwiftPM links them, through links with names free of spaces.
modules="NIOCore NIOEmbedded NIOHTTP1 NIOHTTPTypes NIOHTTPTypesHTTP1 HTTPTypes NIOPosix NIO NIOConcurrencyHelpers
    _NIODataStructures _NIOBase64 CNIOLLHTTP CNIOLinux CNIOPosix CNIOAtomics CNIODarwin CNIOWindows CNIOWASI CNIOOpenBSD CNIOFreeBSD
    Atomics _AtomicsShims DequeModule InternalCollectionsUtilities"
rm -rf "$out/objects"
mkdir -p "$out/objects"
for m in $modules; do
    [ -d "$release/$m.build" ] || continue
    find "$release/$m.build" -name '*.o' | sort | awk -v dir="$out/objects" -v m="$m" '{ printf "%s\t%s/%s-%d.o\n", $0, dir, m, NR }' |
        while IFS="$(printf '\t')" read -r object link; do ln -s "$object" "$link"; done
done
# The C targets' module maps, as SwiftPM passes them, so that the Swift modules importing them load.
cmaps=""
for map in "$release"/*.build/module.modulemap; do cmaps="$cmaps -Xcc -fmodule-map-file=$map"; done
for include in swift-atomics/Sources/_AtomicsShims/include swift-nio/Sources/CNIOWindows/include; do
    cmaps="$cmaps -Xcc -I$root/.build/checkouts/$include"
done
swiftc -O -g -parse-as-library -sanitize=fuzzer,address -module-name FERServeFuzz $cmaps -I "$release/Modules" \
    "$root/Sources/FERServe/Multipart.swift" "$root/Sources/FERServe/HeaderValue.swift" "$root/Sources/FERServe/ServiceError.swift" \
    "$root/Sources/FERServe/BodyReader.swift" "$root/Sources/FERServe/BodyBudget.swift" "$root/Sources/FERServe/RequestBodyGuard.swift" \
    "$here/FuzzServe.swift" "$out"/objects/*.o \
    -o "$here/.build/fuzz-serve"
echo "built $here/.build/fuzz-serve"
