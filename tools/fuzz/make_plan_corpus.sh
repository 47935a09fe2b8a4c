#!/bin/sh
# Seeds for fuzz-plan: each base model unmutated (detector at 32x32 and 75x101), and one mutation each.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir="$here/.build/plan-corpus"
mkdir -p "$dir"
printf '\000\037\037' > "$dir/lfnsb"
printf '\001\037\037' > "$dir/lfn"
printf '\002\037\037' > "$dir/ddamnet"
printf '\003\037\037' > "$dir/retinaface-32"
printf '\003\112\144' > "$dir/retinaface-75x101"
printf '\000\037\037\012\000\011' > "$dir/lfnsb-mutated"
printf '\003\037\037\100\006\003' > "$dir/retinaface-mutated"
echo "seeds in $dir"
