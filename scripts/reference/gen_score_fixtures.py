#!/usr/bin/env python3
"""Reference fixtures for `zoetrope score`, made with OpenAI's own CLIP code.

Run from the repository root with the project venv:

    /work/main/.venv/bin/python scripts/reference/gen_score_fixtures.py

It writes (all committed) into tests/fixtures/score/:

* clip_score.safetensors: a small CLIP built with `clip.model.CLIP` (ViT tower:
  32 px input, 8 px patches, width 64, 2 layers; text: width 64 (the official
  loader infers heads = width // 64 = 1), 2 layers, context 77, the full
  49408-token vocabulary so that `clip.tokenize` ids fit; embedding 32). The
  weights are the official random initialisation with a fixed seed, stored as
  fp16 to keep the file small (~6.5 MB); the reference numbers are computed
  with exactly those fp16 values widened to fp32.
* a.png, b.png: 32x32 RGB images (the model's input size: the official
  preprocessing is then only ToTensor + Normalize, PIL's resize returns the
  image unchanged);
* c.png: a 48x40 image, which needs the resize + centre crop;
* expected.json: for each image, prompt: the cosine similarity x 100 of
  `model.encode_image(preprocess(image))` and `model.encode_text(clip.tokenize(prompt))`:
  - "official": with the official `_transform` (PIL bicubic resize on the
    uint8 image, CenterCrop, ToTensor, Normalize);
  - "tensor": with the same steps on the float tensor, the resize being
    torchvision's tensor `Resize(antialias=True)` (bicubic) followed by a clamp
    to [0, 1] (what PIL's uint8 output implies, and what zoetrope does). For a
    and b both are identical; for c they differ slightly because PIL resizes
    8-bit data.
"""

import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize

import clip
from clip import model as cm
from clip.clip import _transform

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures", "score")

# embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
# context_length, vocab_size, transformer_width, transformer_heads, transformer_layers
HP = (32, 32, 2, 64, 8, 77, 49408, 64, 1, 2)

PROMPTS = [
    "a red square",
    "a photograph of a lighthouse at dusk, trending on artstation",
    "blue",
]

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def make_model():
    torch.manual_seed(20251123)
    model = cm.CLIP(*HP).eval()
    sd = model.state_dict()
    # Round to fp16 (the stored form) and use the widened values for the reference.
    half = {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
    model.load_state_dict({k: v.float() for k, v in half.items()})
    save_file(half, os.path.join(FIX, "clip_score.safetensors"))
    return model


def make_images():
    y, x = np.mgrid[0:32, 0:32].astype(np.float64)
    a = np.stack(
        [
            255 * x / 31,
            255 * (0.5 + 0.5 * np.sin(y / 3.0)),
            255 * ((x + y) % 8 < 4),
        ],
        -1,
    )
    b = np.zeros((32, 32, 3))
    b[..., 0] = 220
    b[8:24, 8:24] = (30, 60, 200)
    b[..., 1] += 40 * np.cos(x / 5.0)
    y, x = np.mgrid[0:40, 0:48].astype(np.float64)
    c = np.stack(
        [
            255 * (0.5 + 0.5 * np.cos(x / 4.0 + y / 7.0)),
            255 * y / 39,
            255 * ((x // 6 + y // 5) % 2),
        ],
        -1,
    )
    images = {}
    for name, arr in [("a.png", a), ("b.png", b), ("c.png", c)]:
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
        img.save(os.path.join(FIX, name))
        # Read back what was written, as the Rust test will.
        images[name] = Image.open(os.path.join(FIX, name)).convert("RGB")
    return images


def tensor_preprocess(img, n_px):
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = Resize(n_px, interpolation=InterpolationMode.BICUBIC, antialias=True)(x[None])
    x = CenterCrop(n_px)(x.clamp(0, 1))
    return Normalize(MEAN, STD)(x)


@torch.no_grad()
def main():
    os.makedirs(FIX, exist_ok=True)
    model = make_model()
    images = make_images()
    n_px = model.visual.input_resolution
    preprocess = _transform(n_px)
    text = model.encode_text(clip.tokenize(PROMPTS))
    text = text / text.norm(dim=-1, keepdim=True)

    rows = []
    for name, img in images.items():
        official = preprocess(img)[None]
        tensor = tensor_preprocess(img, n_px)
        sims = {}
        for tag, x in [("official", official), ("tensor", tensor)]:
            e = model.encode_image(x)
            e = e / e.norm(dim=-1, keepdim=True)
            sims[tag] = (100.0 * e @ text.T)[0].tolist()
        for i, p in enumerate(PROMPTS):
            rows.append(
                {
                    "image": name,
                    "size": list(img.size),
                    "prompt": p,
                    "official": sims["official"][i],
                    "tensor": sims["tensor"][i],
                }
            )
    with open(os.path.join(FIX, "expected.json"), "w") as f:
        json.dump(
            {
                "model": "clip_score.safetensors",
                "input_resolution": n_px,
                "prompts": PROMPTS,
                "similarities": rows,
            },
            f,
            indent=1,
        )
        f.write("\n")
    for r in rows:
        print(f"{r['image']} {r['prompt'][:30]:<30} official {r['official']:9.4f} tensor {r['tensor']:9.4f}")


if __name__ == "__main__":
    main()
