"""Fixtures for tests/it/render_step.rs: OpenAI CLIP's image preprocessing.

Writes tests/fixtures/step/{down,up}.png (small deterministic RGB images) and
tests/fixtures/step/preprocess.safetensors holding what CLIP's official
`_transform(32)` makes of them: Resize(32, BICUBIC) of the short side, CenterCrop(32),
ToTensor, Normalize with CLIP's mean/std, as [1, 3, 32, 32] float32 tensors under
the keys "down" and "up".

Run: /work/main/.venv/bin/python scripts/reference/gen_step_fixtures.py
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "step"
R = 32


def image(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / w * 6.0 + y / h * 2.0)
    g = 255 * (x > w * 0.6)
    b = 127 + 100 * np.cos(y / h * 5.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    t = Compose([
        Resize(R, interpolation=InterpolationMode.BICUBIC),
        CenterCrop(R),
        ToTensor(),
        Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])
    tensors = {}
    for name, (w, h) in {"down": (100, 60), "up": (20, 14)}.items():
        img = image(w, h, len(name))
        img.save(OUT / f"{name}.png")
        tensors[name] = t(Image.open(OUT / f"{name}.png").convert("RGB")).unsqueeze(0).contiguous()
    save_file(tensors, str(OUT / "preprocess.safetensors"))


if __name__ == "__main__":
    main()
