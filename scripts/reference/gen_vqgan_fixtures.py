#!/usr/bin/env python3
"""Reference fixtures for zoetrope's VQGAN (taming-transformers VQModel / GumbelVQ).

Run with the project virtualenv:

    /work/main/.venv/bin/python scripts/reference/gen_vqgan_fixtures.py

It uses the official taming-transformers modules (taming.modules.*). Importing
taming.models.vqgan needs pytorch_lightning, which is not installed, so the two
models are assembled here from the same submodules under the same attribute
names as VQModel / GumbelVQ (encoder, decoder, quantize, quant_conv,
post_quant_conv), which gives identical state-dict keys.

Outputs:

* tests/fixtures/vqgan/{vq,gumbel}_weights.safetensors: small random models
  under the official key names;
* tests/fixtures/vqgan/{vq,gumbel}_io.safetensors: an input image in [-1, 1]
  and the reference encode output, code indices, z_q and decode output;
* tests/fixtures/keys/vqgan_<name>.txt: "key shape" lines of the official
  state dict (loss.* excluded) for the six full-size models, built on the meta
  device so nothing is allocated.

The small models are checked for near-ties (nearest-code distances and Gumbel
logits), so the Rust side can require exactly equal indices.
"""

import os
import sys

import torch
from safetensors.torch import save_file

from taming.modules.diffusionmodules.model import Encoder, Decoder
from taming.modules.vqvae.quantize import VectorQuantizer2, GumbelQuantize

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures", "vqgan")
KEYS = os.path.join(ROOT, "tests", "fixtures", "keys")


def dd(ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels):
    return dict(
        double_z=False,
        z_channels=z_channels,
        resolution=resolution,
        in_channels=3,
        out_ch=3,
        ch=ch,
        ch_mult=list(ch_mult),
        num_res_blocks=num_res_blocks,
        attn_resolutions=list(attn_resolutions),
        dropout=0.0,
    )


class VQModelLike(torch.nn.Module):
    """taming.models.vqgan.VQModel without Lightning and without the loss."""

    def __init__(self, ddconfig, n_embed, embed_dim):
        super().__init__()
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        # VQModel uses VectorQuantizer2 (imported as VectorQuantizer) with beta=0.25.
        self.quantize = VectorQuantizer2(n_embed, embed_dim, beta=0.25)
        self.quant_conv = torch.nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = torch.nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def encode_prequant(self, x):
        return self.quant_conv(self.encoder(x))

    def decode(self, quant):
        return self.decoder(self.post_quant_conv(quant))


class GumbelVQLike(VQModelLike):
    """taming.models.vqgan.GumbelVQ without Lightning, loss and temperature schedule."""

    def __init__(self, ddconfig, n_embed, embed_dim):
        super().__init__(ddconfig, n_embed, embed_dim)
        self.quantize = GumbelQuantize(
            ddconfig["z_channels"], embed_dim, n_embed=n_embed, kl_weight=1e-8, temp_init=1.0
        )


# Full-size hyper-parameters (see src/models/vqgan/config.rs for the sources).
F16 = dict(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
           resolution=256, z_channels=256)
GUMBEL_F8 = dict(ch=128, ch_mult=(1, 1, 2, 4), num_res_blocks=2, attn_resolutions=(32,),
                 resolution=256, z_channels=256)
FULL = {
    "imagenet": (VQModelLike, F16, 16384, 256),
    "imagenet_1024": (VQModelLike, F16, 1024, 256),
    "coco": (VQModelLike, F16, 8192, 256),
    "wikiart": (VQModelLike, F16, 16384, 256),
    "sflckr": (VQModelLike, F16, 1024, 256),
    "openimages": (GumbelVQLike, GUMBEL_F8, 8192, 256),
}


def write_key_lists():
    os.makedirs(KEYS, exist_ok=True)
    for name, (cls, cfg, n_embed, embed_dim) in FULL.items():
        with torch.device("meta"):
            model = cls(dd(**cfg), n_embed, embed_dim)
        lines = []
        for k, v in model.state_dict().items():
            if k.startswith("loss."):
                continue
            lines.append(f"{k} {','.join(str(s) for s in v.shape)}")
        with open(os.path.join(KEYS, f"vqgan_{name}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"keys: vqgan_{name}.txt ({len(lines)} tensors)")


def randomise(model, gen):
    """Random weights that exercise every parameter (GroupNorm affine included)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or \
                    name.endswith("norm.weight") or name.endswith("norm_out.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / fan_in) ** 0.5)
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def min_relative_gap(values, largest):
    """Smallest gap between the best and second-best entry per row, relative to scale."""
    top = torch.topk(values, 2, dim=1, largest=largest).values
    gap = (top[:, 0] - top[:, 1]).abs()
    scale = values.abs().max(dim=1).values.clamp_min(1e-12)
    return (gap / scale).min().item()


def make_vq(seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = dd(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32,
             z_channels=32)
    model = VQModelLike(cfg, n_embed=64, embed_dim=16).eval()
    randomise(model, gen)
    x = torch.rand((1, 3, 32, 48), generator=gen) * 2 - 1
    with torch.no_grad():
        z = model.encode_prequant(x)
        # Codebook on the scale of z, so nearest-code search is meaningful.
        cb = torch.randn((64, 16), generator=gen) * z.std()
        model.quantize.embedding.weight.copy_(cb)
        z_q, _, (_, _, ind) = model.quantize(z)
        ind = ind.reshape(z.shape[0], z.shape[2], z.shape[3])
        flat = z.permute(0, 2, 3, 1).reshape(-1, 16)
        d = (flat[:, None, :] - cb[None, :, :]).pow(2).sum(-1)
        gap = min_relative_gap(d, largest=False)
        dec = model.decode(z_q)
    return model, dict(image=x, z=z, indices=ind, z_q=z_q, decoded=dec), gap


def make_gumbel(seed):
    gen = torch.Generator().manual_seed(seed)
    cfg = dd(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=16,
             z_channels=32)
    model = GumbelVQLike(cfg, n_embed=64, embed_dim=32).eval()
    randomise(model, gen)
    x = torch.rand((1, 3, 16, 16), generator=gen) * 2 - 1
    with torch.no_grad():
        h = model.encode_prequant(x)
        logits = model.quantize.proj(h)
        ind = logits.argmax(dim=1)
        gap = min_relative_gap(logits.permute(0, 2, 3, 1).reshape(-1, 64), largest=True)
        # The deterministic (argmax) code choice, embedded exactly as
        # GumbelQuantize.get_codebook_entry does it.
        b, hh, ww = ind.shape
        z_q = model.quantize.get_codebook_entry(ind.reshape(-1), (b, hh, ww, 32))
        # Same embedding path as GumbelQuantize.forward's einsum with a hard one-hot.
        one_hot = torch.nn.functional.one_hot(ind, 64).permute(0, 3, 1, 2).float()
        z_q2 = torch.einsum("bnhw,nd->bdhw", one_hot, model.quantize.embed.weight)
        assert torch.allclose(z_q, z_q2)
        dec = model.decode(z_q)
    return model, dict(image=x, prequant=h, logits=logits, indices=ind, z_q=z_q,
                       decoded=dec), gap


def search(maker, name):
    for seed in range(100):
        model, io, gap = maker(seed)
        if gap > 2e-4:
            print(f"{name}: seed {seed}, min relative top-2 gap {gap:.3e}")
            return model, io
    sys.exit(f"{name}: no seed without near-ties")


def save(model, io, prefix):
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("loss.")}
    save_file(sd, os.path.join(FIX, f"{prefix}_weights.safetensors"))
    save_file({k: v.contiguous() for k, v in io.items()},
              os.path.join(FIX, f"{prefix}_io.safetensors"))


def main():
    torch.set_num_threads(2)
    os.makedirs(FIX, exist_ok=True)
    write_key_lists()
    vq, vq_io = search(make_vq, "vq")
    save(vq, vq_io, "vq")
    gm, gm_io = search(make_gumbel, "gumbel")
    save(gm, gm_io, "gumbel")
    for k, v in list(vq_io.items()) + list(gm_io.items()):
        print(f"  {k}: {tuple(v.shape)} {v.dtype} absmax {v.abs().max().item():.3g}")


if __name__ == "__main__":
    main()
