#!/usr/bin/env bash
# Times `zoetrope plan --format json` on a generated 100,000-frame scene.
#
#   benches/plan_bench.sh [path/to/zoetrope]   (default: target/debug/zoetrope)
#
# The scene has 10 scenes of 50,000 steps, 5 steps per frame (100,000
# frames, 500,000 steps), centred 20,000-step cross-fades, prompts with
# expression weights and stops, and expression/keyframe motion, so every
# per-frame number is actually evaluated. Prints the best of 5 runs, the
# output size, and the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/zoetrope}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
SCENES=""
for i in $(seq 1 10); do
  [ -n "$SCENES" ] && SCENES="$SCENES || "
  SCENES="${SCENES}scene number $i, oil painting:1 + 0.5*sin(t) | detail $i:0.3:0.1"
done
cat > "$DIR/long.toml" <<TOML
scenes = "$SCENES"
scene_suffix = " | text:-1:-.9 | watermark:-1:-.9"
steps_per_scene = 50000
steps_per_frame = 5
interpolation_steps = 20000
frames_per_second = 24
animation_mode = "2D"
translate_x = "2*sin(2*pi*t/10)"
zoom_x_2d = "0:(1), 50000:(3), 100000:(0)"
zoom_y_2d = "clamp(f/1000, 0, 2)"
rotate_2d = "0.1*cos(t)"
seed = 1
TOML
best=999
for run in 1 2 3 4 5; do
  s=$(date +%s.%N)
  "$BIN" plan "$DIR/long.toml" --format json > "$DIR/out.json"
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
