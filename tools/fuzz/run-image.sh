#!/bin/sh
# Builds the image fuzzer and its seed corpus if needed, then runs one libFuzzer job.
# Usage: tools/fuzz/run-image.sh [RUNS]        (default 1000000 executions)
# Seeds: every PNG and JPEG under Tests/Fixtures/images of at most 64 KiB, prefixed with the switch byte
# (1 for PNGs: checksums recomputed after mutation; 0 for JPEGs), into .build/image-corpus.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
runs=${1:-1000000}
[ -x "$here/.build/fuzz-image" ] || "$here/build-image.sh"
if [ ! -d "$here/.build/image-corpus" ]; then
    mkdir -p "$here/.build/image-corpus"
    find "$root/Tests/Fixtures/images" -type f \( -name '*.png' -o -name '*.jpg' \) -size -65537c | sort |
    while read -r f; do
        case "$f" in *.png) switch='\001' ;; *) switch='\000' ;; esac
        name=$(printf '%s' "${f#"$root/Tests/Fixtures/images/"}" | tr '/' '_')
        { printf "$switch"; cat "$f"; } >"$here/.build/image-corpus/$name"
    done
fi
mkdir -p "$here/.build/image-run"
cd "$here"
exec ./.build/fuzz-image -max_len=65536 -rss_limit_mb=512 -timeout=10 -runs="$runs" -dict=image.dict \
    -print_final_stats=1 -artifact_prefix=.build/image- .build/image-run .build/image-corpus
