"""Fixtures for tests/it/prompt_masks.rs: pytti-core's masked prompt loss and its gradient.

pytti-core's `Prompt.forward` (Perceptor/Prompt.py) turns a prompt's mask into per-crop stop
floors and weight factors and applies them as

    d      = spherical_dist(embed, target)
    W      = weight * factors
    stops  = maximum(floors + sign(W).clamp(max=0), stop)
    loss   = mean(|W| * replace_grad(sign(W) * d, maximum(sign(W) * d, stops)))

This script re-states that rule (and the mask functions `mask_left` ... `mask_far`,
`mask_semantic` and the windows of `mask_image`, without the error-diffusion buffer that
zoetrope leaves out, docs/design.md §2a) in plain torch, on random embeddings and crops, and
writes tests/fixtures/masks/masked_loss.json: the inputs (cutout embeddings `embeds` [N, D],
prompt `target` [D], semantic text `text` [D], crops in pixels of a `width` x `height`
image, a grey `mask` of `mask_width` x `mask_height`) and per case (mask, threshold,
weight, stop) the loss value and its gradient with respect to `embeds`.

Run: /work/main/.venv/bin/python scripts/reference/gen_mask_fixtures.py (torch only).
"""

import json
import math
from pathlib import Path

import torch

torch.manual_seed(16)
N, D = 12, 8
W_IMG, H_IMG = 96, 64
MW, MH = 12, 8
DEFAULT = 0.5000873264


class ReplaceGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, surrogate):
        ctx.shape = surrogate.shape
        return value

    @staticmethod
    def backward(ctx, grad):
        return None, grad.sum_to_size(ctx.shape)


def spherical(x, y):
    x = torch.nn.functional.normalize(x, dim=-1)
    y = torch.nn.functional.normalize(y, dim=-1)
    return x.sub(y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def places(crops):
    pos = torch.tensor([[x / W_IMG, y / H_IMG] for x, y, s in crops], dtype=torch.float32)
    size = torch.tensor([[s / W_IMG, s / H_IMG] for x, y, s in crops], dtype=torch.float32)
    return pos, size


def geometric(kind, pos, size, th):
    cx = pos[:, 0] + size[:, 0] / 2
    cy = pos[:, 1] + size[:, 1] / 2
    side = size.min(dim=-1)[0]
    return {
        "l": cx.gt(th),
        "r": cx.lt(th),
        "u": cy.gt(th),
        "d": cy.lt(th),
        "n": side.lt(th),
        "f": side.gt(th),
    }[kind].float()


def image_factors(mask, pos, size):
    mu = mask.mean()
    if mu < 0.001:
        return torch.zeros(pos.shape[0])
    dims = torch.tensor([MW, MH]).view(1, -1)
    low = (pos * dims).floor().long()
    high = ((pos + size) * dims).floor().long()
    low[:, 0].clamp_(0, MW - 1)
    high[:, 0].clamp_(0, MW - 1)
    low[:, 1].clamp_(0, MH - 1)
    high[:, 1].clamp_(0, MH - 1)
    out = torch.zeros(pos.shape[0])
    for i in range(pos.shape[0]):
        lx, ly = low[i].tolist()
        hx, hy = high[i].tolist()
        if (hx - lx) * (hy - ly) > 0:
            out[i] = mask[ly:hy, lx:hx].mean()
    return out / mu.sqrt()


def masked_loss(embeds, target, weight, stop, floors, factors):
    d = spherical(embeds, target)
    w = torch.as_tensor(weight) * factors
    sign_offset = w.sign().clamp(max=0)
    signed = d * w.sign()
    stops = torch.maximum(floors + sign_offset, torch.as_tensor(stop, dtype=torch.float32))
    return (w.abs() * ReplaceGrad.apply(signed, torch.maximum(signed, stops))).mean()


def main():
    embeds = torch.randn(N, D)
    target = torch.randn(D)
    text = embeds[:4].mean(0) + 0.3 * torch.randn(D)
    sizes = torch.randint(16, 64, (N,)).tolist()
    crops = []
    for s in sizes:
        x = int(torch.randint(-8, W_IMG - s + 8, ()).item())
        y = int(torch.randint(-8, H_IMG - s + 8, ()).item())
        crops.append((x, y, s))
    mask = (torch.rand(MH, MW) * 255).round() / 255
    pos, size = places(crops)
    cases = []
    grid = [
        ("a", None, 1.5, -math.inf),
        ("l", None, 1.0, -math.inf),
        ("r", 0.3, -0.8, -0.9),
        ("u", 0.45, 2.0, 0.9),
        ("d", None, -1.0, -math.inf),
        ("n", 0.4, 1.0, -math.inf),
        ("f", 0.35, -0.5, -1.1),
        ("image", None, 1.0, -math.inf),
        ("-image", None, -0.7, -1.2),
        ("semantic", None, 1.0, -math.inf),
        ("semantic", 0.2, 1.0, -math.inf),
        ("semantic", 0.6, -1.0, -math.inf),
    ]
    for kind, th, weight, stop in grid:
        t = DEFAULT if th is None else th
        floors = torch.full((N,), -math.inf)
        factors = torch.ones(N)
        if kind in "lrudnf":
            floors = geometric(kind, pos, size, t)
        elif kind == "image":
            factors = image_factors(mask, pos, size)
        elif kind == "-image":
            factors = image_factors(1 - mask, pos, size)
        elif kind == "semantic":
            sd = spherical(embeds, text)
            floors = sd if t == DEFAULT else sd.gt(t * 0.3 + 0.7).float()
        x = embeds.clone().requires_grad_(True)
        loss = masked_loss(x, target, weight, stop, floors, factors)
        loss.backward()
        cases.append(
            {
                "mask": kind,
                "threshold": th,
                "weight": weight,
                "stop": None if stop == -math.inf else stop,
                "value": loss.item(),
                "grad": x.grad.flatten().tolist(),
            }
        )
    doc = {
        "embeds": embeds.flatten().tolist(),
        "n": N,
        "d": D,
        "target": target.tolist(),
        "text": text.tolist(),
        "width": W_IMG,
        "height": H_IMG,
        "crops": crops,
        "mask_width": MW,
        "mask_height": MH,
        "mask": mask.flatten().tolist(),
        "cases": cases,
    }
    out = Path(__file__).resolve().parents[2] / "tests/fixtures/masks/masked_loss.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
