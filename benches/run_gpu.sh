#!/usr/bin/env bash
# The GPU step-speed benchmark (BENCHMARKS.md, "GPU step speed"): zoetrope's
# step against the VQGAN+CLIP notebook loop, for configurations a, b, c, plus
# the 200-step fp32 vs bf16 loss curves, plus the CUDA checks of the models
# and the render (CLIP on CUDA against the official similarities of the score
# fixture; a CUDA bf16 render of the quick start with the tiny models; both
# print into log.txt). One device call runs all of it.
#
# ---------------------------------------------------------------------------
# Prepare here (the machine with the Rust toolchain), in the repository root:
#
#   export LIBTORCH=/work/main/.libtorch
#   cargo build --release --no-default-features      # no FFmpeg on the GPU machine
#
#   # the reference's packages the GPU image lacks (it has torch, torchvision,
#   # numpy, regex, tqdm, einops, matplotlib), as wheels; .whl/ is git-ignored
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl clip-anytorch==2.6.0 taming-transformers-rom1504==0.0.6 \
#     ftfy==6.3.1 wcwidth==0.9.4
#
# Then ONE device call (the `run` tool), carrying the binary and the wheels:
#
#   run(command="bash benches/run_gpu.sh", timeout_s=600,
#       carry=["target/release/zoetrope", ".whl"])
#
# What comes back under $OUT (8 files, the device tool's limit; the scratch
# files, env.txt and the per-configuration parts, stay in $WORK):
#   log.txt             everything printed (the machine first)
#   zoetrope_bf16.json  zoetrope bench, configs a b c, bf16 (the optimised
#                       path), with the per-phase breakdown
#   zoetrope_fp32.json  the same in fp32
#   reference.json      benches/reference/notebook_loop.py, configs a b c
#                       (CLIP fp16 + VQGAN fp32, as the notebooks run)
#   tuning.json         config $TUNE_CONFIG (default b) in bf16 with the speed
#                       switches off all together and one at a time
#                       (`zoetrope bench --tune NAME=off`), channels-last on
#   loss_curves.csv     config a, seed 0, 200 steps: step,fp32,bf16
#   summary.md          the tables for BENCHMARKS.md (benches/summarize_gpu.py;
#                       also printed to log.txt)
#   loss_curves.png     the two curves, when matplotlib is there
#
# Smoke test on a CPU (what this script does, tiny models, seconds):
#   SMALL=1 DEVICE=cpu ZOETROPE_BIN=target/debug/zoetrope OUT=/tmp/bench-smoke \
#     PYTHON=/work/main/.venv/bin/python bash benches/run_gpu.sh
#
# Environment knobs: STEPS (timed steps, default 30), WARMUP (default 5),
# CURVE_STEPS (default 200), SEED (default 0), DEVICE (default cuda),
# SMALL=1 (tiny models), TUNE_CONFIG (default b; TUNE_CONFIG=none skips the
# switch runs), ZOETROPE_BIN, PYTHON, OUT, WORK.
# ---------------------------------------------------------------------------
set -uo pipefail

OUT=${OUT:-out/bench-gpu}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$OUT" "$WORK"
TUNE_CONFIG=${TUNE_CONFIG:-b}
BIN=${ZOETROPE_BIN:-target/release/zoetrope}
PY=${PYTHON:-python3}
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-5}
CURVE_STEPS=${CURVE_STEPS:-200}
SEED=${SEED:-0}
DEVICE=${DEVICE:-cuda}
SMALL_FLAG=()
if [ "${SMALL:-0}" = 1 ]; then SMALL_FLAG=(--small); fi

exec 3>&1 4>&2
exec > >(tee -a "$OUT/log.txt") 2>&1
TEE_PID=$!
status=0
step() { # step NAME COMMAND...: runs, reports failure, goes on
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  if "$@"; then echo "== $name: done in $((SECONDS - t0)) s"
  else echo "== $name: FAILED (exit $?)"; status=1; fi
}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
TORCH_LIB=$("$PY" -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
export LD_LIBRARY_PATH=$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(uname -srm)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  fi
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  "$BIN" info
  echo "settings: STEPS=$STEPS WARMUP=$WARMUP CURVE_STEPS=$CURVE_STEPS SEED=$SEED DEVICE=$DEVICE SMALL=${SMALL:-0}"
} > "$WORK/env.txt" 2>&1
cat "$WORK/env.txt"

# One process per configuration: the driver-side memory figure is the growth
# of the device memory in use during the run, and a process that ran an
# earlier configuration keeps that one's cached blocks.
merge() { # merge OUT_FILE PART...: concatenates the parts' JSON arrays
  local target=$1; shift
  "$PY" -c 'import json,sys; print(json.dumps([r for f in sys.argv[1:] for r in json.load(open(f))], indent=2))' "$@" > "$target" && rm -f "$@"
}
common=(--device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" --seed "$SEED" "${SMALL_FLAG[@]}")
for side in zoetrope_bf16 zoetrope_fp32 reference; do
  parts=()
  for c in a b c; do
    part="$WORK/$side-$c.part.json"
    case $side in
      zoetrope_bf16) step "$side $c" bash -c '"$0" bench "${@:2}" --precision bf16 --breakdown --format json > "$1"' "$BIN" "$part" --config "$c" "${common[@]}" ;;
      zoetrope_fp32) step "$side $c" bash -c '"$0" bench "${@:2}" --precision fp32 --breakdown --format json > "$1"' "$BIN" "$part" --config "$c" "${common[@]}" ;;
      reference) step "$side $c" bash -c '"$0" benches/reference/notebook_loop.py "${@:2}" > "$1"' "$PY" "$part" --config "$c" "${common[@]}" ;;
    esac
    [ -s "$part" ] && parts+=("$part")
  done
  if [ ${#parts[@]} -gt 0 ]; then merge "$OUT/$side.json" "${parts[@]}"; fi
done

# What each speed switch brings: one process per variant, bf16.
if [ "$TUNE_CONFIG" != none ]; then
  parts=()
  i=0
  for t in all=off cudnn-benchmark=off low-precision-cutouts=off async-uploads=off channels-last=on; do
    i=$((i + 1))
    part="$WORK/tuning-$i.part.json"
    step "tuning $TUNE_CONFIG $t" bash -c '"$0" bench "${@:2}" > "$1"' "$BIN" "$part" \
      --config "$TUNE_CONFIG" "${common[@]}" --precision bf16 --breakdown --tune "$t" --format json
    [ -s "$part" ] && parts+=("$part")
  done
  if [ ${#parts[@]} -gt 0 ]; then merge "$OUT/tuning.json" "${parts[@]}"; fi
fi

curve=(--config a --device "$DEVICE" --steps "$CURVE_STEPS" --warmup 0 --seed "$SEED" "${SMALL_FLAG[@]}" --format json)
step "loss curve fp32" "$BIN" bench "${curve[@]}" --precision fp32 --loss-curve "$WORK/loss_fp32.csv"
step "loss curve bf16" "$BIN" bench "${curve[@]}" --precision bf16 --loss-curve "$WORK/loss_bf16.csv"
if [ -s "$WORK/loss_fp32.csv" ] && [ -s "$WORK/loss_bf16.csv" ]; then
  paste -d, "$WORK/loss_fp32.csv" "$WORK/loss_bf16.csv" | cut -d, -f1,2,4 \
    | sed '1s/.*/step,fp32,bf16/' > "$OUT/loss_curves.csv"
fi

# CUDA checks of the models and the render (issues "Models" and "render"):
# CLIP on CUDA (fp32 and bf16) against the official similarities of the score
# fixture, and a CUDA bf16 render of the quick-start scene with the tiny
# models. Both print into log.txt.
cuda_checks() {
  local fx=tests/fixtures/score
  "$BIN" score "$fx/a.png" "$fx/b.png" "$fx/c.png" \
    --prompt "a red square" "a photograph of a lighthouse at dusk, trending on artstation" "blue" \
    --perceptors "$fx/clip_score.safetensors" --device "$DEVICE" --format json > /tmp/score.json || return 1
  "$PY" - "$fx/expected.json" /tmp/score.json "$DEVICE" <<'PYEOF' || return 1
import json, sys
exp = json.load(open(sys.argv[1])); got = json.load(open(sys.argv[2]))
worst = 0.0
for e in exp["similarities"]:
    g = [r for r in got if r["image"].endswith(e["image"]) and r["prompt"] == e["prompt"]][0]
    worst = max(worst, abs(g["similarity"] - e["tensor"]))
print(f"score parity on {sys.argv[3]}: max |zoetrope - official| = {worst:.5f} (similarity x100) over {len(exp['similarities'])} pairs")
PYEOF
  local w=/tmp/zoetrope-weights prec=bf16
  [ "$DEVICE" = cpu ] && prec=fp32
  ZOETROPE_WEIGHTS=$w "$BIN" weights tiny > /dev/null || return 1
  sed -e "s/^seed = 7\$/seed = 7\ndevice = \"$DEVICE\"\nprecision = \"$prec\"/" \
    scenes/quickstart.toml > /tmp/quickstart_dev.toml
  rm -rf /tmp/render-dev
  ZOETROPE_WEIGHTS=$w "$BIN" render /tmp/quickstart_dev.toml --out /tmp/render-dev --log-lines || return 1
  "$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); f=m["frames"]; s=sum(x["seconds"] for x in f[1:]); print("render:", m["device"], m["precision"], len(f), "frames; frames 2.. at", round(10*(len(f)-1)/s,1), "steps/s")' /tmp/render-dev/quickstart_dev/metadata.json
}
step "cuda checks" cuda_checks
step "summary" bash -c '"$0" benches/summarize_gpu.py "$1" "$2" > "$1/summary.md"' "$PY" "$OUT" "$WORK"
cat "$OUT/summary.md"
# Let tee finish log.txt before the device tool collects $OUT.
exec 1>&3 2>&4 3>&- 4>&-
wait "$TEE_PID" 2>/dev/null
exit $status
