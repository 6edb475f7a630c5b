"""Fixtures for tests/it/guidance_augment.rs: pytti-core's cutout augmentations, run by kornia.

pytti-core (`Perceptor/cutouts/augs.py::pytti_classic`) augments every batch of cutouts with

    K.RandomHorizontalFlip(p=0.3)
    K.RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode="border")
    K.RandomPerspective(0.2, p=0.4)
    K.ColorJitter(hue=0.01, saturation=0.01, p=0.7)
    K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=False, p=0.7)

and pins kornia==0.6.2. This script runs exactly that kornia version on small images
and writes, under tests/fixtures/augment/:

* single_ops.safetensors: a batch of 4 cutouts of 3x16x16 (`input`: smooth, uniform random,
  flat colours with greys and channel ties, smooth and saturated), and for each operation its
  hand-chosen parameters (per cutout, with `*_prob` = 1 where the operation is applied) and
  kornia's output on `input`, each module called with `params=` (kornia's way of re-running a
  module on fixed parameters; parameters are given for the applied cutouts only, as kornia
  keeps them). Operations: flip, affine (with a non-zero horizontal translation too, to pin
  the axis convention), perspective, jitter (pytti's factor ranges), jitter_strong (all four
  colour operations far from neutral, another order), erase.
* composite.safetensors: a smooth batch `smooth` of 6 cutouts of 3x32x32 and kornia's
  flip -> affine -> perspective sequence on it (`seq_out`) with hand-chosen parameters (same
  names as above; every cutout gets both resampling stages, three are flipped, one has a
  perspective with zero offsets), for measuring the one-resample composite against kornia's
  two resamples.
* sequential.safetensors: one seeded run of the whole pytti_classic Sequential on a smooth
  batch of 8 cutouts of 3x24x24: the parameters it drew (scattered to per-cutout arrays),
  the output after the geometric modules (`geometric_out`) and the final output (`out`).

Every parameter array is float32 with one row per cutout (zeros where the operation is not
applied); the jitter order is int64. Perspective offsets are kornia's `r ~ U(0, 1)` draws,
recovered from its end points (`end = start + (d·W/2, d·H/2)·r·sign`).

Environment: the fixtures were made with torch 2.1.2 and kornia 0.6.2 (the pair the
research notes verified kornia's formulas with), in a venv of their own (CPU is enough):

    python -m venv /tmp/kvenv
    /tmp/kvenv/bin/pip install torch==2.1.2 kornia==0.6.2 numpy safetensors

kornia 0.6.2 also runs on the project's own torch (2.11, .venv) for these modules, without
touching .venv: `.venv/bin/python -m pip install --target /tmp/kt --no-deps kornia==0.6.2
packaging`, then `PYTHONPATH=/tmp/kt .venv/bin/python scripts/reference/gen_augment_fixtures.py`.
That reproduces the committed fixtures to 7e-6 (float rounding), the seeded Sequential's
draws included.

Run: /tmp/kvenv/bin/python scripts/reference/gen_augment_fixtures.py
"""

import math
from pathlib import Path

import kornia
import kornia.augmentation as K
import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

assert kornia.__version__ == "0.6.2", f"needs kornia 0.6.2, found {kornia.__version__}"

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "augment"
SEQ_SEED = 11  # every module applies to some cutouts and not others


def pytti_classic():
    """pytti-core's Perceptor/cutouts/augs.py::pytti_classic, verbatim."""
    return nn.Sequential(
        K.RandomHorizontalFlip(p=0.3),
        K.RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode="border"),
        K.RandomPerspective(0.2, p=0.4),
        K.ColorJitter(hue=0.01, saturation=0.01, p=0.7),
        K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=False, p=0.7),
        nn.Identity(),
    )


def smooth(n, s, seed):
    """n smooth colour images of s x s with values in [0.1, 0.9] (low-frequency sinusoids)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:s, 0:s].astype(np.float64) / s
    out = np.empty((n, 3, s, s))
    for i in range(n):
        for c in range(3):
            fx, fy = rng.uniform(0.5, 1.5, 2)
            px, py = rng.uniform(0, 2 * math.pi, 2)
            out[i, c] = 0.5 + 0.2 * np.sin(2 * math.pi * fx * x + px) + 0.2 * np.cos(2 * math.pi * fy * y + py)
    return torch.tensor(out, dtype=torch.float32)


def single_input():
    s = 16
    rng = np.random.default_rng(16)
    a = smooth(1, s, 1)[0]
    b = torch.tensor(rng.uniform(0, 1, (3, s, s)), dtype=torch.float32)
    # 4x4 blocks of flat colours: greys (max = min), ties between channels, black, white.
    palette = np.array([
        [0.5, 0.5, 0.5], [1.0, 1.0, 0.0], [0.2, 0.7, 0.7], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0],
        [0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.6, 0.3, 0.6], [0.25, 0.75, 0.5],
    ])
    blocks = palette[rng.integers(0, len(palette), (4, 4))]  # 4x4x3
    c = torch.tensor(np.kron(blocks.transpose(2, 0, 1), np.ones((1, 4, 4))), dtype=torch.float32)
    y, x = np.mgrid[0:s, 0:s].astype(np.float64) / s
    d = torch.tensor(np.stack([0.5 + 0.5 * np.sin(6 * x), 0.5 + 0.5 * np.cos(5 * y), x * y]), dtype=torch.float32)
    return torch.stack([a, b, c, d]).contiguous()


def sel(v, prob):
    """The rows of v for the applied cutouts (kornia keeps parameters for those only)."""
    return v[prob]


def run_flip(x, prob):
    m = K.RandomHorizontalFlip(p=0.3)
    return m(x, params={"batch_prob": prob, "forward_input_shape": torch.tensor(x.shape)})


def affine_params(x, prob, angle, tx, ty):
    n = int(prob.sum())
    h, w = x.shape[-2:]
    return {
        "batch_prob": prob,
        "translations": torch.stack([sel(tx, prob), sel(ty, prob)], -1),
        "center": torch.tensor([[w / 2 - 0.5, h / 2 - 0.5]] * n, dtype=torch.float32),
        "scale": torch.ones(n, 2),
        "angle": sel(angle, prob),
        "sx": torch.zeros(n),
        "sy": torch.zeros(n),
    }


def run_affine(x, prob, angle, tx, ty):
    m = K.RandomAffine(degrees=30, translate=0.1, p=0.8, padding_mode="border")
    return m(x, params=affine_params(x, prob, angle, tx, ty))


SIGN = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])


def corners(h, w):
    return torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=torch.float32)


def perspective_params(x, prob, offsets, d=0.2):
    n = int(prob.sum())
    h, w = x.shape[-2:]
    start = corners(h, w).expand(n, 4, 2)
    f = torch.tensor([d * w / 2, d * h / 2])
    end = start + f * sel(offsets, prob) * SIGN
    return {"batch_prob": prob, "start_points": start.clone(), "end_points": end}


def run_perspective(x, prob, offsets):
    m = K.RandomPerspective(0.2, p=0.4)
    return m(x, params=perspective_params(x, prob, offsets))


def run_jitter(x, prob, b, c, s, h, order):
    m = K.ColorJitter(hue=0.01, saturation=0.01, p=0.7)
    params = {
        "batch_prob": prob,
        "brightness_factor": sel(b, prob),
        "contrast_factor": sel(c, prob),
        "saturation_factor": sel(s, prob),
        "hue_factor": sel(h, prob),
        "order": order,
    }
    return m(x, params=params)


def run_erase(x, prob, box):
    m = K.RandomErasing(scale=(0.1, 0.4), ratio=(0.3, 1 / 0.3), same_on_batch=False, p=0.7)
    b = sel(box, prob)
    params = {
        "batch_prob": prob,
        "xs": b[:, 0].clone(),
        "ys": b[:, 1].clone(),
        "widths": b[:, 2].clone(),
        "heights": b[:, 3].clone(),
        "values": torch.zeros(len(b)),
    }
    return m(x, params=params)


def f32(v):
    return torch.tensor(v, dtype=torch.float32)


def single_ops():
    x = single_input()
    t = {"input": x}

    prob = torch.tensor([True, False, True, True])
    t["flip_prob"] = prob.float()
    t["flip_out"] = run_flip(x, prob)

    prob = torch.tensor([True, True, False, True])
    angle, tx, ty = f32([25.0, -17.5, 0.0, 8.0]), f32([0.0, 0.0, 0.0, 1.5]), f32([1.3, -1.6, 0.0, -0.7])
    t.update(affine_prob=prob.float(), affine_angle=angle, affine_tx=tx, affine_ty=ty)
    t["affine_out"] = run_affine(x, prob, angle, tx, ty)

    prob = torch.tensor([True, True, True, False])
    offsets = f32([
        [[0.1, 0.9], [0.5, 0.2], [0.95, 0.7], [0.3, 0.0]],
        [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],  # kornia's quirk: even this stretches
        [[0.8, 0.05], [0.15, 0.6], [0.4, 0.45], [0.99, 0.33]],
        [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
    ])
    t.update(persp_prob=prob.float(), persp_offsets=offsets)
    t["persp_out"] = run_perspective(x, prob, offsets)

    prob = torch.tensor([True, True, True, False])
    b, c = f32([1.0] * 4), f32([1.0] * 4)
    s, h = f32([1.008, 0.991, 1.01, 1.0]), f32([0.0093, -0.0071, 0.004, 0.0])
    order = torch.tensor([3, 0, 2, 1])
    t.update(jitter_prob=prob.float(), jitter_brightness=b, jitter_contrast=c, jitter_saturation=s,
             jitter_hue=h, jitter_order=order)
    t["jitter_out"] = run_jitter(x, prob, b, c, s, h, order)

    prob = torch.tensor([True, True, True, True])
    b, c = f32([1.2, 0.9, 1.0, 1.1]), f32([0.8, 1.3, 1.1, 0.7])
    s, h = f32([1.5, 0.4, 1.9, 0.0]), f32([0.21, -0.37, 0.45, 0.1])
    order = torch.tensor([2, 3, 1, 0])
    t.update(jitter_strong_prob=prob.float(), jitter_strong_brightness=b, jitter_strong_contrast=c,
             jitter_strong_saturation=s, jitter_strong_hue=h, jitter_strong_order=order)
    t["jitter_strong_out"] = run_jitter(x, prob, b, c, s, h, order)

    prob = torch.tensor([True, False, True, True])
    box = f32([[2, 3, 5, 7], [0, 0, 0, 0], [0, 9, 16, 7], [11, 0, 5, 16]])  # x, y, w, h
    t.update(erase_prob=prob.float(), erase_box=box)
    t["erase_out"] = run_erase(x, prob, box)
    return t


def composite():
    x = smooth(6, 32, 2)
    t = {"smooth": x}
    flip = torch.tensor([True, False, True, False, True, False])
    allp = torch.ones(6, dtype=torch.bool)
    angle = f32([27.0, -29.0, 12.5, -6.0, 0.5, 18.0])
    tx = f32([0.0] * 6)
    ty = f32([3.1, -2.4, 0.9, -3.2, 0.0, 1.7])
    offsets = torch.tensor(np.random.default_rng(5).uniform(0, 1, (6, 4, 2)), dtype=torch.float32)
    offsets[4] = 0.0
    t.update(flip_prob=flip.float(), affine_prob=allp.float(), affine_angle=angle, affine_tx=tx,
             affine_ty=ty, persp_prob=allp.float(), persp_offsets=offsets)
    y = run_flip(x, flip)
    y = run_affine(y, allp, angle, tx, ty)
    t["seq_out"] = run_perspective(y, allp, offsets)
    return t


def sequential():
    x = smooth(8, 24, 3)
    n, _, h, w = x.shape
    torch.manual_seed(SEQ_SEED)
    seq = pytti_classic()
    y = x
    outs = []
    for m in seq:
        y = m(y)
        outs.append(y)
    flip, affine, persp, jitter, erase = (m._params for m in list(seq)[:5])
    t = {"input": x, "geometric_out": outs[2], "jitter_out": outs[3], "out": outs[4]}

    def scatter(prob, v, shape=()):
        full = torch.zeros((n, *shape))
        full[prob] = v.float().reshape(-1, *shape)
        return full

    t["flip_prob"] = flip["batch_prob"].float()
    p = affine["batch_prob"]
    t["affine_prob"] = p.float()
    t["affine_angle"] = scatter(p, affine["angle"])
    t["affine_tx"] = scatter(p, affine["translations"][:, 0])
    t["affine_ty"] = scatter(p, affine["translations"][:, 1])
    p = persp["batch_prob"]
    t["persp_prob"] = p.float()
    f = torch.tensor([0.2 * w / 2, 0.2 * h / 2])
    r = (persp["end_points"] - persp["start_points"]) / (f * SIGN)
    t["persp_offsets"] = scatter(p, r, (4, 2))
    p = jitter["batch_prob"]
    t["jitter_prob"] = p.float()
    for k in ["brightness", "contrast", "saturation", "hue"]:
        t[f"jitter_{k}"] = scatter(p, jitter[f"{k}_factor"])
    t["jitter_order"] = jitter["order"].long()
    p = erase["batch_prob"]
    t["erase_prob"] = p.float()
    box = torch.stack([erase["xs"], erase["ys"], erase["widths"], erase["heights"]], -1)
    t["erase_box"] = scatter(p, box, (4,))
    print("sequential draws (seed %d):" % SEQ_SEED)
    for k in ["flip", "affine", "persp", "jitter", "erase"]:
        print(f"  {k:7s} applied", t[f"{k}_prob"].int().tolist())
    return t


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, tensors in [("single_ops", single_ops()), ("composite", composite()), ("sequential", sequential())]:
        tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
        save_file(tensors, str(OUT / f"{name}.safetensors"))


if __name__ == "__main__":
    main()
