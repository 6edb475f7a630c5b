#!/usr/bin/env python3
"""Summarises a `benches/run_gpu.sh` result folder as Markdown for BENCHMARKS.md.

Usage: python3 benches/summarize_gpu.py OUT_DIR [WORK_DIR] > OUT_DIR/summary.md

Reads zoetrope_bf16.json, zoetrope_fp32.json, reference.json (the JSON arrays
that `zoetrope bench --format json` and benches/reference/notebook_loop.py
print), tuning.json (the speed switches) and loss_curves.csv (step,fp32,bf16)
from OUT_DIR, and env.txt (machine and date) from WORK_DIR (default OUT_DIR).
Writes loss_curves.png beside them when matplotlib is importable.
Only the standard library is needed for the Markdown.
"""

import csv
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return {r["config"]: r for r in json.load(f)}
    except (OSError, ValueError) as e:
        print(f"<!-- {os.path.basename(path)}: not readable ({e}) -->")
        return {}


def curves(path):
    try:
        with open(path) as f:
            rows = list(csv.DictReader(f))
        return ([(int(r["step"]), float(r["fp32"])) for r in rows],
                [(int(r["step"]), float(r["bf16"])) for r in rows])
    except (OSError, ValueError, KeyError):
        return [], []


def fmt(x, spec=".1f", none="n/a"):
    return none if x is None else format(x, spec)


def phases(rows, label):
    """Per-phase ms/step of the runs that have a breakdown."""
    have = [(c, rows[c]) for c in ["a", "b", "c"] if c in rows and rows[c].get("phases_ms")]
    if not have:
        return
    names = []
    for _, r in have:
        for p, _ in r["phases_ms"]:
            if p not in names:
                names.append(p)
    print(f"### Where a step's time goes ({label}; device synchronised between phases)\n")
    print("| config | " + " | ".join(names) + " | sum | unsynchronised step |")
    print("|---|" + "---|" * (len(names) + 2))
    for c, r in have:
        d = dict(r["phases_ms"])
        cells = [f"{d[p]:.2f}" if p in d else "" for p in names]
        print(f"| {c} | " + " | ".join(cells) + f" | {sum(d.values()):.2f} | {r['ms_per_step']:.2f} |")
    print()


def tuning(out, zb):
    """The speed switches, each flipped alone (or all together), per config."""
    try:
        with open(os.path.join(out, "tuning.json")) as f:
            rows = json.load(f)
    except (OSError, ValueError):
        return
    if not rows:
        return
    print("### The speed switches (bf16; each row flips what differs from the default)\n")
    print("| config | switches | ms/step | GPU memory (driver, MiB) | torch max allocated (MiB) | time vs the default |")
    print("|---|---|---|---|---|---|")
    for c in ["a", "b", "c"]:
        mine = [r for r in rows if r["config"] == c]
        if not mine:
            continue
        base = zb.get(c)

        def row(r, label):
            rel = f"{r['ms_per_step'] / base['ms_per_step']:.2f}×" if base else ""
            print(f"| {c} | {label}{r.get('tuning', '?')} | {r['ms_per_step']:.2f} "
                  f"| {fmt(r.get('peak_gpu_mem_mib'), '.0f')} "
                  f"| {fmt(r.get('torch_max_allocated_mib'), '.0f')} | {rel} |")

        if base:
            row(base, "default: ")
        for r in mine:
            row(r, "")
    print()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    work = sys.argv[2] if len(sys.argv) > 2 else out
    zb = load(os.path.join(out, "zoetrope_bf16.json"))
    zf = load(os.path.join(out, "zoetrope_fp32.json"))
    ref = load(os.path.join(out, "reference.json"))
    try:
        env = open(os.path.join(work, "env.txt")).read().strip()
    except OSError:
        env = "(env.txt missing)"

    print("### Machine\n")
    print("```\n" + env + "\n```\n")
    print("### Step speed\n")
    print("| config | side | precision | ms/step | steps/s | GPU memory (driver, MiB) "
          "| torch max allocated / reserved (MiB) | GFLOP/step | TFLOP/s | share of bf16 peak "
          "| speed-up vs reference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in ["a", "b", "c"]:
        r = ref.get(c)
        for side, rows in (("zoetrope", zb), ("zoetrope", zf), ("reference", ref)):
            x = rows.get(c)
            if x is None:
                continue
            speedup = ""
            if side == "zoetrope" and r is not None:
                speedup = f"**{r['ms_per_step'] / x['ms_per_step']:.2f}×**"
            share = x.get("peak_share")
            print(f"| {c} | {side} | {x['precision']} | {x['ms_per_step']:.2f} "
                  f"| {x['steps_per_s']:.2f} | {fmt(x.get('peak_gpu_mem_mib'), '.0f')} "
                  f"| {fmt(x.get('torch_max_allocated_mib'), '.0f')} / {fmt(x.get('torch_max_reserved_mib'), '.0f')} "
                  f"| {x['flops_per_step'] / 1e9:.1f} | {x['achieved_tflops']:.1f} "
                  f"| {fmt(None if share is None else 100 * share, '.1f')}{'' if share is None else ' %'} | {speedup} |")
    print()
    print("zoetrope's GFLOP/step is its analytic count (src/bench/flops.rs); the "
          "reference's is measured by torch.utils.flop_counter.FlopCounterMode on "
          "one extra step. TFLOP/s = GFLOP/step ÷ time per step.\n")

    phases(zb, "zoetrope bf16")
    tuning(out, zb)

    f32, b16 = curves(os.path.join(out, "loss_curves.csv"))
    print("### Quality: loss curves, configuration a, same seed\n")
    if f32 and b16 and len(f32) == len(b16):
        lf, lb = f32[-1][1], b16[-1][1]
        rel = abs(lb - lf) / abs(lf)
        tail = min(20, len(f32))
        mf = sum(l for _, l in f32[-tail:]) / tail
        mb = sum(l for _, l in b16[-tail:]) / tail
        rel_tail = abs(mb - mf) / abs(mf)
        verdict = "within" if rel <= 0.02 else "NOT within"
        print(f"- after {f32[-1][0]} steps: fp32 loss {lf:.5f}, bf16 loss {lb:.5f}: "
              f"relative difference {100 * rel:.2f} % ({verdict} 2 %)")
        print(f"- mean of the last {tail} steps: fp32 {mf:.5f}, bf16 {mb:.5f}: "
              f"{100 * rel_tail:.2f} %\n")
        print("| step | fp32 | bf16 |")
        print("|---|---|---|")
        every = max(1, len(f32) // 20)
        for i in list(range(0, len(f32), every)) + ([len(f32) - 1] if (len(f32) - 1) % every else []):
            print(f"| {f32[i][0]} | {f32[i][1]:.5f} | {b16[i][1]:.5f} |")
        print()
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.plot([s for s, _ in f32], [l for _, l in f32], label="fp32")
            ax.plot([s for s, _ in b16], [l for _, l in b16], label="bf16")
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.set_title("zoetrope bench --config a (random weights, seed 0)")
            ax.legend()
            fig.tight_layout()
            fig.savefig(os.path.join(out, "loss_curves.png"), dpi=120)
            print("Plot: loss_curves.png\n")
        except Exception as e:  # matplotlib is optional
            print(f"<!-- no plot: {e} -->\n")
    else:
        print("(loss curves missing or of different lengths)\n")


if __name__ == "__main__":
    main()
