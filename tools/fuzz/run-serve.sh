#!/bin/sh
# Builds the fer-serve body fuzzer and its seed corpus if needed, then runs one libFuzzer job.
# Usage: tools/fuzz/run-serve.sh [RUNS]        (default 1000000 executions)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-1000000}
[ -x "$here/.build/fuzz-serve" ] || "$here/build-serve.sh"
[ -d "$here/.build/serve-corpus" ] || python3 "$here/make_serve_corpus.py"
mkdir -p "$here/.build/serve-run"
cd "$here"
export SWIFT_BACKTRACE=enable=no  # the Swift backtracer and ASan do not mix
exec ./.build/fuzz-serve -max_len=65536 -rss_limit_mb=512 -timeout=10 -runs="$runs" \
    -print_final_stats=1 -artifact_prefix=.build/serve- .build/serve-run .build/serve-corpus
