#!/usr/bin/env bash
# The GPU step-speed benchmark (BENCHMARKS.md, "GPU step speed"): zoetrope's
# step against the VQGAN+CLIP notebook loop, for configurations a, b, c, plus
# the 200-step fp32 vs bf16 loss curves, plus the CUDA checks of the models
# and the render (CLIP on CUDA against the official similarities of the score
# fixture; a CUDA bf16 render of the quick start with the tiny models, and
# the same render killed and resumed; the first losses of config b with the
# switches made after run 5 against the plain path; all print into log.txt).
# One device call runs all of it.
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
#   # the shared libraries the binary needs that the GPU image lacks
#   # (fontconfig and freetype, for the plan chart's text); .devlibs/ is
#   # listed in .git/info/exclude
#   mkdir -p .devlibs && for l in libfontconfig.so.1 libfreetype.so.6 \
#     libexpat.so.1 libpng16.so.16 libbrotlidec.so.1 libbrotlicommon.so.1; do
#     cp -L /lib/x86_64-linux-gnu/$l .devlibs/; done
#
# Then ONE device call (the `run` tool), carrying the binary, the wheels and
# the libraries:
#
#   run(command="bash benches/run_gpu.sh", timeout_s=600,
#       carry=["target/release/zoetrope", ".whl", ".devlibs"])
#
# What comes back under $OUT (8 files, the device tool's limit; the scratch
# files, env.txt and the per-configuration parts, stay in $WORK):
#   log.txt             everything printed (the machine first)
#   zoetrope_bf16.json  zoetrope bench, configs a b c, bf16 (the optimised
#                       path), with the per-phase breakdown
#   zoetrope_fp32.json  the same in fp32
#   reference.json      benches/reference/notebook_loop.py, configs a b c
#                       (CLIP fp16 + VQGAN fp32, as the notebooks run)
#   tuning.json         the TUNE_RUNS variants in bf16: the speed switches
#                       flipped all together and one at a time
#                       (`zoetrope bench --tune NAME=on|off`)
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
# SMALL=1 (tiny models), SIDES (default "zoetrope_bf16 zoetrope_fp32
# reference"), TUNE_RUNS (CONFIG:SWITCH=on|off items, or none), SKIP
# ("curves", "checks"), PROFILE=1 (Nsight Compute kernel times of one eager
# step of config b), ZOETROPE_BIN, PYTHON, OUT, WORK.
# ---------------------------------------------------------------------------
set -uo pipefail

OUT=${OUT:-out/bench-gpu}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$OUT" "$WORK"
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
# The GPU image lacks fontconfig/freetype (the plan chart's text); the
# command carries them from this machine in .devlibs (see the header).
if [ -d .devlibs ]; then export LD_LIBRARY_PATH=$PWD/.devlibs:$LD_LIBRARY_PATH; fi
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
SIDES=${SIDES:-zoetrope_bf16 zoetrope_fp32 reference}
for side in $SIDES; do
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

# What each speed switch brings: one process per variant, bf16. TUNE_RUNS
# lists CONFIG:SWITCH=on|off items (TUNE_RUNS=none skips them).
# The default measures the switches made after the last H100 call (run 5);
# the earlier ones are in BENCHMARKS.md.
TUNE_RUNS=${TUNE_RUNS:-a:lean-activations=off b:lean-activations=off a:deterministic=on b:deterministic=on c:deterministic=on}
if [ "$TUNE_RUNS" != none ]; then
  parts=()
  i=0
  for item in $TUNE_RUNS; do
    i=$((i + 1))
    c=${item%%:*} t=${item#*:}
    part="$WORK/tuning-$i.part.json"
    step "tuning $c $t" bash -c '"$0" bench "${@:2}" > "$1"' "$BIN" "$part" \
      --config "$c" "${common[@]}" --precision bf16 --breakdown --tune "$t" --format json
    [ -s "$part" ] && parts+=("$part")
  done
  if [ ${#parts[@]} -gt 0 ]; then merge "$OUT/tuning.json" "${parts[@]}"; fi
fi

skip() { case " ${SKIP:-} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if ! skip curves; then
curve=(--config a --device "$DEVICE" --steps "$CURVE_STEPS" --warmup 0 --seed "$SEED" "${SMALL_FLAG[@]}" --format json)
step "loss curve fp32" "$BIN" bench "${curve[@]}" --precision fp32 --loss-curve "$WORK/loss_fp32.csv"
step "loss curve bf16" "$BIN" bench "${curve[@]}" --precision bf16 --loss-curve "$WORK/loss_bf16.csv"
if [ -s "$WORK/loss_fp32.csv" ] && [ -s "$WORK/loss_bf16.csv" ]; then
  paste -d, "$WORK/loss_fp32.csv" "$WORK/loss_bf16.csv" | cut -d, -f1,2,4 \
    | sed '1s/.*/step,fp32,bf16/' > "$OUT/loss_curves.csv"
fi
fi

# CUDA checks of the models and the render (issues "Models" and "render"):
# CLIP on CUDA (in the fixture weights' fp32) against the official similarities of the score
# fixture, a CUDA bf16 render of the quick-start scene with the tiny models,
# the same render again (do seeded renders repeat?), and with
# `--tune deterministic=on` a render and the same render killed after frame
# 12 and resumed (issue "render": frames identical to the uninterrupted
# run). All print into log.txt.
# How many frames of run folder $1 are byte-identical in run folder $2.
same_frames() {
  local n=0 f
  for f in "$1"/frame_*.png; do cmp -s "$f" "$2/$(basename "$f")" && n=$((n + 1)); done
  echo "$n"
}
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
  "$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); f=m["frames"]; s=sum(x["seconds"] for x in f[1:]); print("render:", m["device"], m["precision"], len(f), "frames; frames 2.. at", round(10*(len(f)-1)/s,1), "steps/s; GPU peak allocated", m.get("gpu_peak_allocated_mib"), "MiB, reserved", m.get("gpu_peak_reserved_mib"), "MiB")' /tmp/render-dev/quickstart_dev/metadata.json
  # The same render again, uninterrupted: does a seeded render repeat on
  # this device? (On CUDA it did not in run 6; BENCHMARKS.md.)
  rm -rf /tmp/render-again
  ZOETROPE_WEIGHTS=$w "$BIN" render /tmp/quickstart_dev.toml --out /tmp/render-again --quiet || return 1
  echo "repeat on $DEVICE: $(same_frames /tmp/render-dev/quickstart_dev /tmp/render-again/quickstart_dev) of 48 frames byte-identical between two uninterrupted renders"
  # With --tune deterministic=on: one render, then the same render killed
  # (-9) once frame 12 is written and resumed (without --tune: a run resumes
  # with its own switches); its frames against the first's, byte for byte.
  rm -rf /tmp/render-det
  ZOETROPE_WEIGHTS=$w "$BIN" render /tmp/quickstart_dev.toml --out /tmp/render-det --log-lines \
    --tune deterministic=on > /tmp/render-det.log || return 1
  "$PY" -c 'import json,sys; m=json.load(open(sys.argv[1])); f=m["frames"]; s=sum(x["seconds"] for x in f[1:]); print("render, deterministic=on: frames 2.. at", round(10*(len(f)-1)/s,1), "steps/s")' /tmp/render-det/quickstart_dev/metadata.json
  local d=/tmp/render-kill/quickstart_dev pid
  rm -rf /tmp/render-kill
  ZOETROPE_WEIGHTS=$w "$BIN" render /tmp/quickstart_dev.toml --out /tmp/render-kill --quiet \
    --tune deterministic=on &
  pid=$!
  for _ in $(seq 3000); do [ -f "$d/frame_00012.png" ] && break; sleep 0.02; done
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  local before
  before=$(ls "$d"/frame_*.png 2>/dev/null | wc -l)
  if [ "$before" -ge 48 ]; then
    echo "resume on $DEVICE: the render finished before the kill; no resume tested"
    return 0
  fi
  ZOETROPE_WEIGHTS=$w "$BIN" render --resume "$d" --quiet || return 1
  echo "resume on $DEVICE, deterministic=on: killed with $before frames written; after the resume $(same_frames /tmp/render-det/quickstart_dev "$d") of 48 frames byte-identical to the uninterrupted deterministic render"
}
# The switches made after run 5 against the plain path on this device: the
# first six losses of config b (its 512² maps take the lean node's
# whole-GPU statistics) with lean-activations and fold-quick-gelu off, with
# the defaults, and with checkpoint-perceptors on; fp32 and bf16.
switch_checks() {
  local prec base
  for prec in fp32 bf16; do
    base=(bench --config b --device "$DEVICE" --precision "$prec" --steps 6 --warmup 0
      --seed "$SEED" "${SMALL_FLAG[@]}")
    "$BIN" "${base[@]}" --tune lean-activations=off --tune fold-quick-gelu=off \
      --loss-curve "$WORK/sw_plain.csv" > /dev/null || return 1
    "$BIN" "${base[@]}" --loss-curve "$WORK/sw_default.csv" > /dev/null || return 1
    "$BIN" "${base[@]}" --tune checkpoint-perceptors=on \
      --loss-curve "$WORK/sw_checkpoint.csv" > /dev/null || return 1
    "$PY" - "$prec" "$WORK"/sw_plain.csv "$WORK"/sw_default.csv "$WORK"/sw_checkpoint.csv <<'PYEOF' || return 1
import csv, sys
curves = [[float(r["loss"]) for r in csv.DictReader(open(f))] for f in sys.argv[2:]]
plain = curves[0]
for name, c in zip(["defaults", "checkpoint-perceptors=on"], curves[1:]):
    worst = max(abs(a - b) / abs(a) for a, b in zip(plain, c))
    print(f"switches on {sys.argv[1]}: {name} vs lean-activations=off fold-quick-gelu=off:"
          f" largest relative loss difference over {len(c)} steps {worst:.2e}")
PYEOF
  done
}
skip checks || step "cuda checks" cuda_checks
skip checks || step "switch checks" switch_checks
# Per-kernel GPU time of one eager step of config b (PROFILE=1): Nsight
# Compute's kernel durations, summed by kernel name (top 25 into the log).
if [ "${PROFILE:-0}" = 1 ] && command -v ncu >/dev/null; then
  profile() {
    timeout "${PROFILE_TIMEOUT:-120}" ncu --csv --page raw --metrics gpu__time_duration.sum \
      --clock-control none "$BIN" bench --config b --device "$DEVICE" --seed "$SEED" \
      "${SMALL_FLAG[@]}" --steps 1 --warmup 0 --precision bf16 --tune cuda-graphs=off --format json \
      > "$WORK/ncu.csv" 2> "$WORK/ncu.err" || { tail -5 "$WORK/ncu.err"; return 1; }
    "$PY" - "$WORK/ncu.csv" <<'PYEOF'
import csv, sys, collections
rows = [l for l in open(sys.argv[1]) if l.startswith('"')]
r = list(csv.DictReader(rows))
units = r[0].get("gpu__time_duration.sum", "") if r else ""
tot = collections.Counter(); cnt = collections.Counter()
for x in r[1:]:
    try:
        v = float(x["gpu__time_duration.sum"].replace(",", ""))
    except (KeyError, ValueError):
        continue
    name = x.get("Kernel Name", "?")[:90]
    tot[name] += v; cnt[name] += 1
all_t = sum(tot.values())
print(f"kernels: {sum(cnt.values())}, GPU time {all_t:.0f} {units} (model set-up and one step of config b, eager)")
for name, v in tot.most_common(25):
    print(f"{100 * v / all_t:5.1f} %  {v:12.0f}  x{cnt[name]:<5d} {name}")
PYEOF
  }
  step "profile" profile
fi

step "summary" bash -c '"$0" benches/summarize_gpu.py "$1" "$2" > "$1/summary.md"' "$PY" "$OUT" "$WORK"
cat "$OUT/summary.md"
# Let tee finish log.txt before the device tool collects $OUT.
exec 1>&3 2>&4 3>&- 4>&-
wait "$TEE_PID" 2>/dev/null
exit $status
