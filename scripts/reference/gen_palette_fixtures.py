"""Fixtures for tests/it/palette.rs: pytti's Limited Palette image (`PixelImage`).

The formulas of pytti-core's `image_models/pixel.py` (decode, HDR loss, palette
normalisation loss, `update`'s clamps, `encode_image`'s brightness and smart encode
with the HSV loss of `LossAug/HSVLossClass.py`, kornia's `rgb_to_hsv` saturation and
value) are written out here in plain torch, in float64, on fixed float32 inputs, for
zoetrope's float32 implementation (`src/guidance/palette.rs`) to be compared against.

tests/fixtures/palette/palette.safetensors
    inputs (float32): "raw" [S, N, 3] palette parameter in [0, 2]; "v" [H, W] brightness
      (a few values outside [0, 1], to exercise the clamp); "t" [N, H, W] palette weights;
      "r" [1, 3, H, W] fixed weights of the test loss; "locked" [S, N, 3] a fixed palette
      in [0, 1], sorted as sort_pallet sorts; "rgb" [1, 3, H, W] an image to encode.
    outputs (float32):
      "sorted" [S, N, 3]: sort_pallet of raw (clamp(raw/2, 0, 1), each palette sorted by
        0.299 r^2 + 0.587 g^2 + 0.114 b^2, stable, darkest first);
      "image" [1, 3, H, W]: decode_tensor;
      "hdr", "norm": the unweighted HDR (gamma GAMMA) and palette normalisation losses;
      "loss": sum(image * r) + HDR_W * hdr + NORM_W * norm;
      "grad_raw", "grad_v", "grad_t": its gradient;
      "locked_image", "locked_grad_raw", "locked_grad_v", "locked_grad_t": the same with the
        palette locked to "locked" (sort_pallet returns it; the HDR loss is a constant);
      "clamped": [raw | v | t] flattened after update()'s clamps;
      "brightness" [H, W]: encode_image's value, |rgb * sqrt(0.299, 0.587, 0.114)|;
      "encoded_<k>" [S*N*3 + H*W + N*H*W]: the flat [raw | v | t] after k smart-encode
        steps (Adam lr 0.1 on raw and t, HSV loss + 0.01 * HDR + NORM_W * norm, update()
        after each step), starting from [raw | v | t] with v replaced by the brightness,
        for k in ENCODE_STEPS.

Run: .venv/bin/python scripts/reference/gen_palette_fixtures.py  (torch only)
"""

from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "palette"
S, N, H, W = 5, 4, 6, 7
GAMMA = 1.7
HDR_W = 0.3
NORM_W = 0.2
INERTIA = 2.0
ENCODE_STEPS = [1, 3]
HSP = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)


def sort_palette(raw):
    p = (raw / INERTIA).clamp(0, 1)
    brightness = (p.square() * HSP).sum(-1)  # [S, N]
    order = torch.argsort(brightness, dim=0, stable=True)
    return torch.gather(p, 0, order.unsqueeze(-1).expand_as(p))


def decode(palette, v, t):
    s = palette.shape[0]
    n = t.shape[0]
    x = v.clamp(0, 1) * (s - 1)
    lo = x.floor()
    frac = (x - lo)[..., None, None]  # gradient through x only
    lo, hi, near = lo.long(), x.ceil().long(), x.round().long()
    weights = t.permute(1, 2, 0)  # [H, W, N]
    chosen = torch.nn.functional.one_hot(weights.argmax(2), n).to(palette.dtype)[..., None]
    mix = weights.softmax(2)[..., None]
    discrete = (palette[near] * chosen).sum(2)
    continuous = ((palette[lo] * (1 - frac) + palette[hi] * frac) * mix).sum(2)
    backward = 0.5 * continuous + 0.5 * discrete
    out = backward + (discrete - backward).detach()  # value: discrete
    return out.permute(2, 0, 1).unsqueeze(0)


def hdr_loss(palette, gamma):
    s, n = palette.shape[:2]
    norms = (palette * HSP.sqrt()).norm(dim=-1)
    ramp = torch.linspace(0, 1, s, dtype=palette.dtype).pow(gamma)[:, None].expand(s, n)
    return ((norms - ramp) ** 2).mean()


def norm_loss(t):
    n = t.shape[0]
    q = t.permute(1, 2, 0).reshape(-1, n).softmax(-1)
    m = q.shape[0]
    mu = q.mean(0, keepdim=True)
    sigma = q.std(0, keepdim=True)
    c = q - mu
    cov = (c.T @ c) / (sigma.T @ sigma * m)
    off = cov - torch.diag(cov.diagonal())
    return off.mean() + (1 / (sigma * m)).mean()


def hsv_features(rgb):
    mx = rgb.max(1, keepdim=True).values
    mn = rgb.min(1, keepdim=True).values
    sat = (mx - mn) / (mx + 1e-8)
    return torch.cat([rgb, sat, mx], 1)


def test_loss(raw, v, t, r, locked=None):
    palette = locked if locked is not None else sort_palette(raw)
    image = decode(palette, v, t)
    hdr = hdr_loss(palette, GAMMA)
    norm = norm_loss(t)
    return image, hdr, norm, (image * r).sum() + HDR_W * hdr + NORM_W * norm


def grads(raw, v, t, r, locked=None):
    leaves = [x.clone().requires_grad_(True) for x in (raw, v, t)]
    image, hdr, norm, loss = test_loss(*leaves, r, locked)
    loss.backward()
    # A part the loss does not reach (the palette parameter, when locked) gets zeros.
    return image, hdr, norm, loss, [
        x.grad if x.grad is not None else torch.zeros_like(x) for x in leaves
    ]


def clamp_all(raw, v, t):
    with torch.no_grad():
        raw.clamp_(0, INERTIA)
        v.clamp_(0, 1)
        t.clamp_(min=0)


def adam_steps(raw, v, t, rgb, steps):
    """pytti's smart encode: Adam(lr 0.1) on raw and t, HSV loss + 0.01 HDR + NORM_W norm."""
    raw, t = raw.clone().requires_grad_(True), t.clone().requires_grad_(True)
    v = v.clone()
    opt = torch.optim.Adam([raw, t], lr=0.1)
    target = hsv_features(rgb)
    for _ in range(steps):
        opt.zero_grad()
        palette = sort_palette(raw)
        image = decode(palette, v, t)
        loss = ((hsv_features(image) - target) ** 2).mean()
        loss = loss + 0.01 * hdr_loss(palette, GAMMA) + NORM_W * norm_loss(t)
        loss.backward()
        opt.step()
        clamp_all(raw, v, t)
    return torch.cat([raw.detach().reshape(-1), v.reshape(-1), t.detach().reshape(-1)])


def main():
    g = torch.Generator().manual_seed(1616)
    raw32 = torch.rand(S, N, 3, generator=g) * 2.2 - 0.1
    v32 = torch.rand(H, W, generator=g) * 1.2 - 0.1
    t32 = torch.rand(N, H, W, generator=g) * 2 - 0.2
    r32 = torch.randn(1, 3, H, W, generator=g)
    locked32 = torch.rand(S, N, 3, generator=g)
    rgb32 = torch.rand(1, 3, H, W, generator=g)
    raw, v, t, r = (x.double() for x in (raw32, v32, t32, r32))
    # A fixed palette as lock_palette makes one: sorted, in [0, 1].
    locked32 = sort_palette(locked32.double() * INERTIA).float()
    locked, rgb = locked32.double(), rgb32.double()

    out = {"raw": raw32, "v": v32, "t": t32, "r": r32, "locked": locked32, "rgb": rgb32}
    out["sorted"] = sort_palette(raw)
    image, hdr, norm, loss, (g_raw, g_v, g_t) = grads(raw, v, t, r)
    out.update(image=image, hdr=hdr, norm=norm, loss=loss)
    out.update(grad_raw=g_raw, grad_v=g_v, grad_t=g_t)
    image, _, _, _, (g_raw, g_v, g_t) = grads(raw, v, t, r, locked)
    out.update(locked_image=image, locked_grad_raw=g_raw, locked_grad_v=g_v, locked_grad_t=g_t)
    c = [x.clone() for x in (raw, v, t)]
    clamp_all(*c)
    out["clamped"] = torch.cat([x.reshape(-1) for x in c])
    brightness = (rgb * HSP.sqrt()[None, :, None, None]).norm(dim=1)[0]
    out["brightness"] = brightness
    # The smart encode starts from a clamped state (as after encode_random/update).
    start = [x.clone() for x in (raw, v, t)]
    clamp_all(*start)
    for k in ENCODE_STEPS:
        out[f"encoded_{k}"] = adam_steps(start[0], brightness, start[2], rgb, k)

    OUT.mkdir(parents=True, exist_ok=True)
    tensors = {k: x.detach().float().contiguous() for k, x in out.items()}
    meta = {
        "S": str(S), "N": str(N), "H": str(H), "W": str(W),
        "gamma": str(GAMMA), "hdr_weight": str(HDR_W), "norm_weight": str(NORM_W),
    }
    save_file(tensors, OUT / "palette.safetensors", metadata=meta)
    print(f"wrote {OUT / 'palette.safetensors'}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
