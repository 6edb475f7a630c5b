#!/usr/bin/env python3
"""Dump the tensors of an official PyTorch weights file into a safetensors file.

Usage: convert_weights.py INPUT OUTPUT.safetensors

`zoetrope weights import` runs this (with the project virtualenv's Python) for
the two official formats that only PyTorch can read:

- OpenAI CLIP TorchScript archives (`RN50.pt`, `ViT-B-32.pt`, ...): read with
  `torch.jit.load(...).state_dict()`, as OpenAI's own loader does;
- pickled checkpoints written by `torch.save`, such as taming-transformers'
  Lightning `.ckpt` files: the tensors under `state_dict` (or a plain dict of
  tensors).

Pickles are read with `weights_only=True`, so loading a file never runs code
from it. Lightning checkpoints name classes that are not installed here
(`pytorch_lightning.callbacks...ModelCheckpoint` keys the callback state); those
names are replaced by inert placeholder classes, which is safe because nothing
but the tensors is kept.

The tensors are written unchanged, under the keys they have in the file: the
renaming to official key names (dropping `first_stage_model.`, `loss.*`, ...)
is zoetrope's job, so that it is the same for every input format. A JSON
summary goes to stdout. Errors about the input go to stderr with exit code 2;
exit code 3 means PyTorch or safetensors is not installed.
"""

import json
import pickle
import re
import sys
import zipfile

USAGE = "usage: convert_weights.py INPUT OUTPUT.safetensors"


def fail(message, code=2):
    print(message, file=sys.stderr)
    sys.exit(code)


try:
    import torch
    from safetensors.torch import save_file
except ImportError as e:  # pragma: no cover - depends on the environment
    fail(f"{sys.executable} cannot import PyTorch/safetensors ({e}); run scripts/setup.sh", 3)


def is_torchscript(path):
    """A TorchScript archive is a zip holding `<name>/code/` and `constants.pkl`."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def check_zip(path):
    """Checks every entry's CRC: PyTorch itself reads damaged data without complaint."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        fail(f"the archive is damaged ({e}); download it again")
    if bad is not None:
        fail(f"the archive is damaged: {bad} fails its CRC check; download it again")


def placeholder(full_name):
    module, _, name = full_name.rpartition(".")

    class Placeholder:
        def __init__(self, *args, **kwargs):
            self.args = args

        def __setstate__(self, state):
            self.state = state

    Placeholder.__module__ = module
    Placeholder.__name__ = name
    Placeholder.__qualname__ = name
    return Placeholder


UNSUPPORTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+) was not an allowed global")


def load_pickle(path):
    """torch.load(weights_only=True), with placeholders for the classes it names."""
    names = []
    if zipfile.is_zipfile(path):
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    for _ in range(50):
        stubs = [placeholder(n) for n in names]
        try:
            with torch.serialization.safe_globals(stubs):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            # Legacy (non-zip) files name their classes only as loading meets them.
            m = UNSUPPORTED_GLOBAL.search(str(e))
            if not m or m.group(1) in names:
                raise
            names.append(m.group(1))
    fail("the file names too many classes that are not installed here")


def tensors_of(obj):
    """The state dict inside a loaded checkpoint, and the non-tensor keys skipped."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
        container = "lightning"
    elif isinstance(obj, dict):
        container = "state_dict"
    else:
        what = f"{type(obj).__module__}.{type(obj).__qualname__}"
        fail(f"the file holds a pickled {what} object, not a state dict or a Lightning checkpoint")
    tensors, skipped = {}, []
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            tensors[str(k)] = v
        else:
            skipped.append(str(k))
    return container, tensors, skipped


def main():
    if len(sys.argv) != 3:
        fail(USAGE)
    src, dst = sys.argv[1], sys.argv[2]
    check_zip(src)
    try:
        if is_torchscript(src):
            container = "torchscript"
            sd = torch.jit.load(src, map_location="cpu").state_dict()
            tensors, skipped = dict(sd), []
        else:
            container, tensors, skipped = tensors_of(load_pickle(src))
    except SystemExit:
        raise
    except pickle.UnpicklingError:
        fail(
            "it holds Python objects beyond tensors that cannot be read safely "
            "(a whole pickled model rather than a state dict?)"
        )
    except Exception as e:  # torch reports bad archives with RuntimeError, pickle errors, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"PyTorch cannot read it ({type(e).__name__}: {first})")
    if not tensors:
        fail("it holds no tensors")
    out = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    try:
        save_file(out, dst)
    except RuntimeError:
        # Tensors sharing storage must be separate copies in safetensors.
        save_file({k: v.clone() for k, v in out.items()}, dst)
    print(json.dumps({"container": container, "tensors": len(out), "skipped": skipped}))


if __name__ == "__main__":
    main()
