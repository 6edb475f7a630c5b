# The diagnostic device call of run 6's session (2026-11-23 10:54 UTC), kept as run.
# It ran on an experimental build whose lean node read ZT_LEAN_* environment
# knobs and ZT_DETERMINISTIC (cuDNN's deterministic mode); those knobs were never
# committed. Its bench rows were lost to a quoting error in the printing line;
# the render and Nsight Compute parts are in log.txt and ncu_a_kernels.txt.
#!/usr/bin/env bash
# Session-4 diagnostic call: lean-node variants (env knobs of an experimental
# build), CUDA render determinism, Nsight Compute kernel sums of config a.
set -uo pipefail
OUT=${OUT:-out/diag}; mkdir -p "$OUT"
BIN=target/release/zoetrope
exec > >(tee -a "$OUT/log.txt") 2>&1
TORCH_LIB=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
export LD_LIBRARY_PATH=$PWD/.devlibs:$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
b() { # b LABEL CONFIG ENV... -- ARGS...
  local label=$1 cfg=$2; shift 2
  local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" "$BIN" bench --config "$cfg" --device cuda --precision bf16 --steps 30 --warmup 5 --seed 0 --format json "$@" > /tmp/b.json 2>/tmp/b.err || { echo "$label FAILED"; tail -3 /tmp/b.err; return; }
  python3 -c 'import json,sys; r=json.load(open("/tmp/b.json"))[0]; print(f"{sys.argv[1]:40s} {r[\"ms_per_step\"]:7.2f} ms  driver {r[\"peak_gpu_mem_mib\"]:6.0f}  alloc {r[\"torch_max_allocated_mib\"]:7.1f}  loss {r[\"final_loss\"]:.5f}")' "$label"
}
for rep in 1 2; do
b "a default" a X=1 --
b "a coeff" a ZT_LEAN_RECOMPUTE_COEFF=1 --
b "a coeff+upbwd" a ZT_LEAN_RECOMPUTE_COEFF=1 ZT_LEAN_UPSAMPLE_BACKWARD=1 --
b "a reduce0" a ZT_LEAN_REDUCE_MIB=0 --
b "a reduce4+coeff" a ZT_LEAN_REDUCE_MIB=4 ZT_LEAN_RECOMPUTE_COEFF=1 --
b "a lean off" a X=1 -- --tune lean-activations=off
b "a deterministic" a ZT_DETERMINISTIC=1 --
b "b default" b X=1 --
b "b coeff" b ZT_LEAN_RECOMPUTE_COEFF=1 --
b "b reduce0" b ZT_LEAN_REDUCE_MIB=0 --
b "b reduce4+coeff" b ZT_LEAN_REDUCE_MIB=4 ZT_LEAN_RECOMPUTE_COEFF=1 --
b "b deterministic" b ZT_DETERMINISTIC=1 --
done
# determinism of the CUDA render
w=/tmp/zw; ZOETROPE_WEIGHTS=$w "$BIN" weights tiny >/dev/null
sed -e 's/^seed = 7$/seed = 7\ndevice = "cuda"\nprecision = "bf16"/' scenes/quickstart.toml > /tmp/q.toml
r() { rm -rf "/tmp/r_$1"; env "${@:2}" ZOETROPE_WEIGHTS=$w "$BIN" render /tmp/q.toml --out "/tmp/r_$1" --quiet $TUNE || echo "render $1 FAILED"; }
cmpd() { python3 - "$1" "$2" "$3" <<'PY'
import sys, glob, os
import numpy as np
from PIL import Image
a=sorted(glob.glob(f"/tmp/r_{sys.argv[1]}/q/frame_*.png")); same=0; first=None; worst=0
for f in a:
    g=f.replace(f"r_{sys.argv[1]}", f"r_{sys.argv[2]}")
    x=open(f,'rb').read(); y=open(g,'rb').read()
    if x==y: same+=1
    elif first is None: first=os.path.basename(f)
    d=np.abs(np.asarray(Image.open(f),dtype=int)-np.asarray(Image.open(g),dtype=int)).max(); worst=max(worst,d)
print(f"{sys.argv[3]:32s}: {same}/{len(a)} frames identical; first differing {first}; max pixel diff {worst}")
PY
}
ls /tmp/q.toml; grep -n "^name\|^title" /tmp/q.toml | head -2
TUNE=""; r d1; r d2; cmpd d1 d2 "defaults twice"
TUNE="--tune cuda-graphs=off"; r e1; r e2; cmpd e1 e2 "cuda-graphs=off twice"
TUNE="--tune async-uploads=off"; r f1; r f2; cmpd f1 f2 "async-uploads=off twice"
TUNE=""; r g1 ZT_DETERMINISTIC=1; r g2 ZT_DETERMINISTIC=1; cmpd g1 g2 "cudnn deterministic twice"
TUNE=""; r h1 ZT_DETERMINISTIC=1 CUBLAS_WORKSPACE_CONFIG=:4096:8; r h2 ZT_DETERMINISTIC=1 CUBLAS_WORKSPACE_CONFIG=:4096:8; cmpd h1 h2 "cudnn det + cublas ws twice"
TUNE="--tune lean-activations=off"; r i1; r i2; cmpd i1 i2 "lean off twice"
ls /tmp/r_d1
# Nsight Compute: config a, one eager step, lean on vs off
if command -v ncu >/dev/null; then
for v in on off; do
  timeout 150 ncu --csv --page raw --metrics gpu__time_duration.sum --clock-control none "$BIN" bench --config a --device cuda --seed 0 --steps 1 --warmup 0 --precision bf16 --tune cuda-graphs=off --tune lean-activations=$v --format json > /tmp/ncu_$v.csv 2>/tmp/ncu.err || tail -3 /tmp/ncu.err
  cp /tmp/ncu_$v.csv "$OUT/ncu_a_lean_$v.csv"
done
fi
python3 - /tmp/ncu_on.csv /tmp/ncu_off.csv <<'PY'
import csv, sys, collections
def load(p):
    rows=[l for l in open(p) if l.startswith('"')]
    r=list(csv.DictReader(rows)); tot=collections.Counter(); cnt=collections.Counter()
    for x in r[1:]:
        try: v=float(x["gpu__time_duration.sum"].replace(",",""))
        except (KeyError,ValueError): continue
        n=x.get("Kernel Name","?")[:100]; tot[n]+=v; cnt[n]+=1
    return tot,cnt
on,con=load(sys.argv[1]); off,coff=load(sys.argv[2])
print(f"lean on: {sum(con.values())} kernels {sum(on.values())/1e3:.0f} us; off: {sum(coff.values())} kernels {sum(off.values())/1e3:.0f} us")
d={k:on.get(k,0)-off.get(k,0) for k in set(on)|set(off)}
for k,v in sorted(d.items(), key=lambda kv:-abs(kv[1]))[:30]:
    print(f"{v/1e3:+9.1f} us  on {on.get(k,0)/1e3:8.1f} x{con.get(k,0):<4d} off {off.get(k,0)/1e3:8.1f} x{coff.get(k,0):<4d} {k}")
PY
