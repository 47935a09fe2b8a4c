#!/bin/sh
# Builds the fuzzer and its seed corpus if needed, then runs one libFuzzer job.
# Usage: tools/fuzz/run.sh [RUNS]        (default 1000000 executions)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
runs=${1:-1000000}
[ -x "$here/.build/fuzz-checkpoint" ] || "$here/build.sh"
[ -d "$here/.build/corpus" ] || python3 "$here/make_corpus.py"
mkdir -p "$here/.build/run"
cd "$here"
exec ./.build/fuzz-checkpoint -max_len=65536 -rss_limit_mb=512 -timeout=10 -runs="$runs" \
    -print_final_stats=1 -artifact_prefix=.build/ .build/run .build/corpus
