#!/usr/bin/env python3
"""The reference for `zoetrope bench`: the VQGAN+CLIP notebooks' z+quantize loop.

This is the optimisation loop that the public VQGAN+CLIP notebooks run
(Katherine Crowson's "VQGAN+CLIP (z+quantize method)" notebook and its
command-line port nerdyrodent/VQGAN-CLIP `generate.py`), written out here with
the official packages and random weights at the real sizes, so that it needs
no weight files:

- CLIP is `clip.model.CLIP` from the official package (clip-anytorch), built
  with the released models' hyper-parameters and left in fp16 on CUDA
  (`clip.model.convert_weights`), which is what `clip.load(..., jit=False)`
  leaves the notebooks with; fp32 on the CPU (as `clip.load` does there).
- The VQGAN is taming-transformers' `VQModel` assembled from
  `taming.modules` under the official submodule names (`encoder`, `decoder`,
  `quantize`, `quant_conv`, `post_quant_conv`): `taming.models.vqgan` imports
  pytorch_lightning, which is not needed to run the model. fp32, as the
  notebooks run it.
- Per step, as the notebooks do: `vector_quantize` of z against the codebook
  with the straight-through gradient, `decode`, `clamp_with_grad` to [0, 1],
  `MakeCutouts` drawing every crop in a Python loop (random size with
  `cut_pow`, random offset, then `(adaptive_avg_pool2d + adaptive_max_pool2d)/2`
  to the perceptor's resolution, nerdyrodent's pooling resampler) and
  nerdyrodent's per-crop noise (`noise_fac` 0.1), CLIP normalisation,
  `encode_image`, the `Prompt` losses (spherical distance with weight and stop,
  `replace_grad`), `loss.backward()`, `Adam(lr=0.1).step()` and z clamped to
  the codebook's per-channel range.
- The notebooks' kornia augmentations are left out (kornia is not installed
  where this runs). They add work to every step of the reference, so leaving
  them out can only make the reference faster and the reported speed-up of
  zoetrope smaller.
- With two perceptors (configuration c), each perceptor gets its own batch of
  cutouts at its resolution, as zoetrope (and pytti) do.

Prints a JSON array with the same fields as `zoetrope bench --format json`.
The FLOPs of one step are *measured* here with
`torch.utils.flop_counter.FlopCounterMode` on one extra, untimed step (matrix
products, convolutions and attention, forward and backward): a cross-check of
zoetrope's analytic count.

Usage:
    python notebook_loop.py [--config a|b|c|all] [--device auto|cpu|cuda]
                            [--steps N] [--warmup N] [--small] [--seed S]
                            [--loss-curve FILE.csv] [--peak-tflops T]
"""

import argparse
import contextlib
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import clip.model
from taming.modules.diffusionmodules.model import Decoder, Encoder
from taming.modules.vqvae.quantize import VectorQuantizer2

PROMPTS = [
    "a photograph of a lighthouse on a rocky coast at dawn",
    "text:-1:-.9",
    "watermark:-1:-.9",
]
CUT_POW = 1.0
NOISE_FAC = 0.1
H100_BF16_PEAK_TFLOPS = 989.4
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# clip.model.CLIP arguments: (embed_dim, image_resolution, vision_layers,
# vision_width, vision_patch_size, context_length, vocab_size,
# transformer_width, transformer_heads, transformer_layers)
CLIP_CONFIGS = {
    "ViT-B/32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),
    # zoetrope's tiny models (src/models/tiny.rs and render/bench.rs)
    "tiny-ViT": (64, 32, 2, 64, 8, 77, 49408, 64, 1, 2),
    "tiny-RN": (64, 32, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 2),
}

# taming ddconfig + (embed_dim, n_embed)
VQGAN_CONFIGS = {
    "imagenet": dict(
        ddconfig=dict(double_z=False, z_channels=256, resolution=256, in_channels=3,
                      out_ch=3, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2,
                      attn_resolutions=[16], dropout=0.0),
        embed_dim=256, n_embed=16384),
    "tiny-vqgan": dict(
        ddconfig=dict(double_z=False, z_channels=32, resolution=256, in_channels=3,
                      out_ch=3, ch=32, ch_mult=[1, 1, 2, 2], num_res_blocks=1,
                      attn_resolutions=[32], dropout=0.0),
        embed_dim=32, n_embed=256),
}


def bench_spec(name, small):
    vit, rn, vq = ("tiny-ViT", "tiny-RN", "tiny-vqgan") if small else ("ViT-B/32", "RN50", "imagenet")
    w_a, h_a, n_a, side_b, n_b = (64, 32, 8, 64, 8) if small else (256, 128, 60, 512, 64)
    table = {
        "a": (w_a, h_a, n_a, [vit]),
        "b": (side_b, side_b, n_b, [vit]),
        "c": (side_b, side_b, n_b, [vit, rn]),
    }
    if name not in table:
        sys.exit(f"unknown configuration {name!r}: use a, b, c or all")
    w, h, n, perceptors = table[name]
    return dict(name=name, small=small, width=w, height=h, cutouts=n,
                perceptors=perceptors, vqgan=vq)


class VQModel(nn.Module):
    """taming.models.vqgan.VQModel's modules under their official names, without Lightning."""

    def __init__(self, ddconfig, embed_dim, n_embed):
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer2(n_embed, embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def decode(self, quant):
        return self.decoder(self.post_quant_conv(quant))


# --- the notebooks' helpers --------------------------------------------------

class ReplaceGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


replace_grad = ReplaceGrad.apply


class ClampWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, min, max):
        ctx.min = min
        ctx.max = max
        ctx.save_for_backward(input)
        return input.clamp(min, max)

    @staticmethod
    def backward(ctx, grad_in):
        input, = ctx.saved_tensors
        return grad_in * (grad_in * (input - input.clamp(ctx.min, ctx.max)) >= 0), None, None


clamp_with_grad = ClampWithGrad.apply


def vector_quantize(x, codebook):
    d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
    indices = d.argmin(-1)
    x_q = F.one_hot(indices, codebook.shape[0]).to(d.dtype) @ codebook
    return replace_grad(x_q, x)


class Prompt(nn.Module):
    def __init__(self, embed, weight=1., stop=float('-inf')):
        super().__init__()
        self.register_buffer('embed', embed)
        self.register_buffer('weight', torch.as_tensor(weight))
        self.register_buffer('stop', torch.as_tensor(stop))

    def forward(self, input):
        input_normed = F.normalize(input.unsqueeze(1), dim=2)
        embed_normed = F.normalize(self.embed.unsqueeze(0), dim=2)
        dists = input_normed.sub(embed_normed).norm(dim=2).div(2).arcsin().pow(2).mul(2)
        dists = dists * self.weight.sign()
        return self.weight.abs() * replace_grad(dists, torch.maximum(dists, self.stop)).mean()


def split_prompt(prompt):
    vals = prompt.rsplit(':', 2)
    vals = vals + ['', '1', '-inf'][len(vals):]
    return vals[0], float(vals[1]), float(vals[2])


class MakeCutouts(nn.Module):
    """Per-crop loop with random size (cut_pow) and offset, pooled to cut_size."""

    def __init__(self, cut_size, cutn, cut_pow=1.):
        super().__init__()
        self.cut_size = cut_size
        self.cutn = cutn
        self.cut_pow = cut_pow
        self.noise_fac = NOISE_FAC

    def forward(self, input):
        sideY, sideX = input.shape[2:4]
        max_size = min(sideX, sideY)
        min_size = min(sideX, sideY, self.cut_size)
        cutouts = []
        for _ in range(self.cutn):
            size = int(torch.rand([]) ** self.cut_pow * (max_size - min_size) + min_size)
            offsetx = torch.randint(0, sideX - size + 1, ())
            offsety = torch.randint(0, sideY - size + 1, ())
            cutout = input[:, :, offsety:offsety + size, offsetx:offsetx + size]
            cutout = (F.adaptive_avg_pool2d(cutout, self.cut_size)
                      + F.adaptive_max_pool2d(cutout, self.cut_size)) / 2
            cutouts.append(cutout)
        batch = torch.cat(cutouts, dim=0)
        if self.noise_fac:
            facs = batch.new_empty([self.cutn, 1, 1, 1]).uniform_(0, self.noise_fac)
            batch = batch + facs * torch.randn_like(batch)
        return batch


# --- the benchmark -----------------------------------------------------------

def mem_used(device):
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    return total - free


def build(spec, device):
    perceptors = []
    for name in spec["perceptors"]:
        model = clip.model.CLIP(*CLIP_CONFIGS[name])
        if device.type == "cuda":
            clip.model.convert_weights(model)  # fp16, as clip.load leaves it on CUDA
        model = model.to(device).eval().requires_grad_(False)
        perceptors.append(model)
    cfg = VQGAN_CONFIGS[spec["vqgan"]]
    with contextlib.redirect_stdout(sys.stderr):  # taming prints the z shape
        vqgan = VQModel(**cfg)
    vqgan = vqgan.to(device).eval().requires_grad_(False)
    normalize = lambda x: (x - torch.tensor(CLIP_MEAN, device=device)[None, :, None, None]) \
        / torch.tensor(CLIP_STD, device=device)[None, :, None, None]
    cuts = [MakeCutouts(p.visual.input_resolution, spec["cutouts"], CUT_POW) for p in perceptors]
    pMs = []  # per perceptor, the prompt losses
    for p in perceptors:
        ms = []
        for prompt in PROMPTS:
            txt, weight, stop = split_prompt(prompt)
            embed = p.encode_text(clip.tokenize(txt).to(device)).float()
            ms.append(Prompt(embed, weight, stop).to(device))
        pMs.append(ms)

    f = 2 ** (len(cfg["ddconfig"]["ch_mult"]) - 1)
    toksX, toksY = spec["width"] // f, spec["height"] // f
    e_dim, n_toks = cfg["embed_dim"], cfg["n_embed"]
    codebook = vqgan.quantize.embedding.weight
    z_min = codebook.min(dim=0).values[None, :, None, None]
    z_max = codebook.max(dim=0).values[None, :, None, None]
    one_hot = F.one_hot(torch.randint(n_toks, [toksY * toksX], device=device), n_toks).float()
    z = one_hot @ codebook
    z = z.view([-1, toksY, toksX, e_dim]).permute(0, 3, 1, 2)
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.1)

    def synth(z):
        z_q = vector_quantize(z.movedim(1, 3), codebook).movedim(3, 1)
        return clamp_with_grad(vqgan.decode(z_q).add(1).div(2), 0, 1)

    def train():
        opt.zero_grad(set_to_none=True)
        out = synth(z)
        losses = []
        for p, mc, ms in zip(perceptors, cuts, pMs):
            iii = p.encode_image(normalize(mc(out))).float()
            losses += [m(iii) for m in ms]
        loss = sum(losses)
        loss.backward()
        opt.step()
        with torch.inference_mode():
            z.copy_(z.maximum(z_min).minimum(z_max))
        return loss.detach()

    return train, (perceptors, vqgan)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(spec, device, steps, warmup, seed, peak_tflops):
    if device.type == "cuda":
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats(device)
    before = mem_used(device)
    torch.manual_seed(seed)
    train, _models = build(spec, device)
    losses = [train() for _ in range(warmup)]
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        losses.append(train())
    sync(device)
    elapsed = time.perf_counter() - start
    after = mem_used(device)
    torch_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    torch_reserved = torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None
    losses = [float(l) for l in losses]

    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        train()
    flops = float(counter.get_total_flops())

    ms = elapsed * 1000.0 / steps
    achieved = flops / (ms / 1000.0) / 1e12
    peak = peak_tflops if device.type == "cuda" else None
    mib = 1024.0 * 1024.0
    return dict(
        side="reference", config=spec["name"], small=spec["small"],
        width=spec["width"], height=spec["height"], cutouts=spec["cutouts"],
        perceptors=spec["perceptors"], vqgan=spec["vqgan"],
        device=str(device),
        precision="clip-fp16+vqgan-fp32" if device.type == "cuda" else "fp32",
        steps=steps, warmup=warmup, seed=seed,
        ms_per_step=ms, steps_per_s=1000.0 / ms,
        peak_gpu_mem_mib=None if before is None else (after - before) / mib,
        torch_max_allocated_mib=None if torch_peak is None else torch_peak / mib,
        torch_max_reserved_mib=None if torch_reserved is None else torch_reserved / mib,
        flops_per_step=flops, flops={"measured_by": "torch.utils.flop_counter.FlopCounterMode"},
        achieved_tflops=achieved,
        peak_share=None if peak is None else achieved / peak,
        peak_tflops=peak,
        final_loss=losses[-1],
    ), losses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="all")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS)
    ap.add_argument("--format", default="json", choices=["json"])
    ap.add_argument("--loss-curve", default=None, metavar="FILE.csv")
    args = ap.parse_args()
    if args.steps < 1:
        sys.exit("--steps must be at least 1")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    names = ["a", "b", "c"] if args.config == "all" else [args.config.lower()]
    results = []
    for name in names:
        r, losses = run(bench_spec(name, args.small), device, args.steps, args.warmup,
                        args.seed, args.peak_tflops)
        if args.loss_curve:
            path = args.loss_curve
            if len(names) > 1:
                stem, dot, ext = path.rpartition(".")
                path = f"{stem}-{name}.{ext}" if dot else f"{path}-{name}"
            with open(path, "w") as f:
                f.write("step,loss\n")
                for i, l in enumerate(losses):
                    f.write(f"{i + 1},{l!r}\n")
        print(f"config {name}: {r['ms_per_step']:.2f} ms/step", file=sys.stderr)
        results.append(r)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
