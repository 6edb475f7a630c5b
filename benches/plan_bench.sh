#!/usr/bin/env bash
# Times `zoetrope plan --format json` on the 100,000-frame scene
# benches/plan_long.toml.
#
#   benches/plan_bench.sh [path/to/zoetrope]   (default: target/debug/zoetrope)
#
# (10 scenes of 50,000 steps, 5 steps per frame: 100,000 frames, 500,000
# steps; its header says more). Prints the best of 5 runs, the output size,
# and the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/zoetrope}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
best=999
for run in 1 2 3 4 5; do
  s=$(date +%s.%N)
  "$BIN" plan benches/plan_long.toml --format json > "$DIR/out.json"
  e=$(date +%s.%N)
  t=$(echo "$e - $s" | bc -l)
  best=$(echo "if ($t < $best) $t else $best" | bc -l)
done
frames=$(python3 -c "import json,sys; d=json.load(open('$DIR/out.json')); print(d['frames'], len(d['timeline']))")
printf 'frames (reported, rows): %s\n' "$frames"
printf 'output: %s bytes\n' "$(stat -c %s "$DIR/out.json")"
printf 'best of 5: %.3f s\n' "$best"
# the same binary with nothing to do, for the start-up (libtorch loading) share
s=$(date +%s.%N); "$BIN" --version > /dev/null; e=$(date +%s.%N)
printf 'start-up alone (zoetrope --version): %.3f s\n' "$(echo "$e - $s" | bc -l)"
printf 'machine: %s, %s cores; %s\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" "$(date -u +%F)"
