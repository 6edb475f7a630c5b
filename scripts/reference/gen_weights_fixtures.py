#!/usr/bin/env python3
"""Generate the tiny weights fixtures used by tests/it/weights_*.rs.

The fixtures imitate the official distribution formats that `zoetrope weights
import` must read, with models small enough to commit (< 1 MB each):

- tiny_clip.pt: a TorchScript archive of the official `clip.model.CLIP`
  (ViT visual tower) with tiny hyper-parameters, traced and saved the way
  OpenAI's archives are (fp16 weights, plus the `input_resolution`,
  `context_length` and `vocab_size` entries their state_dict carries).
- tiny_clip_expected.safetensors: the state dict the import must produce
  (official key names, those three entries removed, fp16 as in the archive).
- tiny_vqgan.ckpt: a PyTorch-Lightning style checkpoint, as taming's
  Net2NetTransformer checkpoints (coco, sflckr) are laid out: the VQGAN's
  weights under `state_dict` prefixed `first_stage_model.`, with `loss.*`
  entries, transformer/conditioning weights that are not the VQGAN, and the
  usual Lightning bookkeeping (epoch, global_step, callbacks keyed by a
  pytorch_lightning class that is not installed here).
- tiny_vqgan_expected.safetensors: what the import must produce from it.

The VQGAN is assembled from taming's own Encoder, Decoder and
VectorQuantizer2 under VQModel's attribute names (taming.models.vqgan imports
pytorch_lightning, which the project virtualenv does not have).

Run with the project virtualenv: .venv/bin/python scripts/reference/gen_weights_fixtures.py
"""

import os
import sys
import types

import torch
from torch import nn
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "weights")


def tiny_clip():
    import clip.model

    torch.manual_seed(1234)
    model = clip.model.CLIP(
        embed_dim=8,
        image_resolution=16,
        vision_layers=1,
        vision_width=64,  # the ViT uses width // 64 heads
        vision_patch_size=8,
        context_length=8,
        vocab_size=40,
        transformer_width=64,  # the official loader infers width // 64 heads
        transformer_heads=1,
        transformer_layers=1,
    ).eval()
    # OpenAI's archives keep these three in the state dict; clip.build_model drops them.
    # (CLIP keeps context_length and vocab_size as plain ints after __init__.)
    for name, value in [("input_resolution", 16), ("context_length", 8), ("vocab_size", 40)]:
        if hasattr(model, name):
            delattr(model, name)
        model.register_buffer(name, torch.tensor(value))
    image = torch.randn(2, 3, 16, 16)
    text = torch.randint(1, 39, (2, 8))
    with torch.no_grad():
        traced = torch.jit.trace(model, (image, text), check_trace=False)
    traced.half()  # the official archives hold fp16 weights
    traced.save(os.path.join(OUT, "tiny_clip.pt"))

    sd = {k: v.detach().clone().contiguous() for k, v in traced.state_dict().items()}
    for k in ["input_resolution", "context_length", "vocab_size"]:
        assert k in sd, k
        del sd[k]
    save_file(sd, os.path.join(OUT, "tiny_clip_expected.safetensors"))
    return len(sd)


class TinyVQModel(nn.Module):
    """taming.models.vqgan.VQModel's parameter layout, without Lightning."""

    def __init__(self):
        super().__init__()
        from taming.modules.diffusionmodules.model import Encoder, Decoder
        from taming.modules.vqvae.quantize import VectorQuantizer2

        dd = dict(double_z=False, z_channels=4, resolution=16, in_channels=3, out_ch=3,
                  ch=32, ch_mult=[1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0)
        self.encoder = Encoder(**dd)
        self.decoder = Decoder(**dd)
        self.quantize = VectorQuantizer2(16, 4, beta=0.25)
        self.quant_conv = nn.Conv2d(4, 4, 1)
        self.post_quant_conv = nn.Conv2d(4, 4, 1)


def tiny_vqgan():
    torch.manual_seed(4321)
    vq = TinyVQModel().eval()
    first_stage = {k: v.detach().clone().contiguous() for k, v in vq.state_dict().items()}
    save_file(first_stage, os.path.join(OUT, "tiny_vqgan_expected.safetensors"))

    sd = {f"first_stage_model.{k}": v for k, v in first_stage.items()}
    # Training-only loss weights (LPIPS + discriminator), dropped by the import.
    sd["first_stage_model.loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)
    sd["first_stage_model.loss.discriminator.main.0.bias"] = torch.randn(4)
    sd["first_stage_model.loss.perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 4, 1, 1)
    # The rest of a Net2NetTransformer: not part of the VQGAN.
    sd["transformer.tok_emb.weight"] = torch.randn(16, 8)
    sd["cond_stage_model.embedding.weight"] = torch.randn(3, 4)

    # A stand-in for the pytorch_lightning class that keys Lightning 1.x's
    # callback state; the real module is absent here, as it is for users.
    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__ = mod.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    for name in ["pytorch_lightning", "pytorch_lightning.callbacks"]:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[mod.__name__] = mod

    ckpt = {
        "epoch": 3,
        "global_step": 1234,
        "pytorch-lightning_version": "1.0.8",
        "callbacks": {ModelCheckpoint: {"monitor": "val/rec_loss", "best_model_score": torch.tensor(0.5)}},
        "optimizer_states": [],
        "lr_schedulers": [],
        "state_dict": sd,
    }
    torch.save(ckpt, os.path.join(OUT, "tiny_vqgan.ckpt"))
    return len(first_stage)


# The official models' hyper-parameters (open_clip's model_configs for the
# OpenAI models; taming's configs for the VQGANs).
CLIP_CONFIGS = {
    # name: (embed_dim, image_resolution, vision_layers, vision_width, patch, text_width, text_heads)
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 512, 8),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 512, 8),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 640, 10),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 768, 12),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 1024, 16),
    "ViT-B/32": (512, 224, 12, 768, 32, 512, 8),
    "ViT-B/16": (512, 224, 12, 768, 16, 512, 8),
    "ViT-L/14": (768, 224, 24, 1024, 14, 768, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 768, 12),
}
VQGAN_CONFIGS = {
    # name: (ch_mult, attn_resolutions, n_embed, gumbel)
    "imagenet": ([1, 1, 2, 2, 4], [16], 16384, False),
    "imagenet_1024": ([1, 1, 2, 2, 4], [16], 1024, False),
    "openimages": ([1, 1, 2, 4], [32], 8192, True),
}


def official_shapes():
    """Key → shape of the official models, built on the meta device (no memory,
    no download): lets the tests run the shape checks on the real layouts."""
    import clip.model
    from taming.modules.diffusionmodules.model import Encoder, Decoder
    from taming.modules.vqvae.quantize import VectorQuantizer2, GumbelQuantize

    out = {"clip": {}, "vqgan": {}}
    with torch.device("meta"):
        for name, (e, res, layers, w, p, tw, th) in CLIP_CONFIGS.items():
            m = clip.model.CLIP(e, res, layers, w, p, 77, 49408, tw, th, 12)
            out["clip"][name] = {k: list(v.shape) for k, v in m.state_dict().items()}
        for name, (ch_mult, attn, n_embed, gumbel) in VQGAN_CONFIGS.items():
            dd = dict(double_z=False, z_channels=256, resolution=256, in_channels=3, out_ch=3,
                      ch=128, ch_mult=ch_mult, num_res_blocks=2, attn_resolutions=attn, dropout=0.0)
            m = nn.Module()
            m.encoder = Encoder(**dd)
            m.decoder = Decoder(**dd)
            m.quantize = GumbelQuantize(256, 256, n_embed) if gumbel else VectorQuantizer2(n_embed, 256, beta=0.25)
            m.quant_conv = nn.Conv2d(256, 256, 1)
            m.post_quant_conv = nn.Conv2d(256, 256, 1)
            out["vqgan"][name] = {k: list(v.shape) for k, v in m.state_dict().items()}
    import gzip
    import json

    with gzip.open(os.path.join(OUT, "official_shapes.json.gz"), "wt") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    official_shapes()
    n_clip = tiny_clip()
    n_vq = tiny_vqgan()
    for name in sorted(os.listdir(OUT)):
        print(f"{name}: {os.path.getsize(os.path.join(OUT, name))} bytes")
    print(f"clip tensors: {n_clip}, vqgan tensors: {n_vq}")


if __name__ == "__main__":
    main()
