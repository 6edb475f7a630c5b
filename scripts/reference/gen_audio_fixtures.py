"""Fixtures for tests/it/audio.rs: scipy's Butterworth band-passes and pytti-style band values.

pytti-core's audio reactivity (docs/design.md §12) designs each filter with
`scipy.signal.butter(order, [lo/22050, hi/22050], btype='bandpass', output='sos')` and runs
`scipy.signal.sosfilt` (zero initial state) over each frame's window. This script writes
what scipy makes, for zoetrope's own design and filter to be compared against:

tests/fixtures/audio/filters.safetensors
    "signal": int16 [8192], a deterministic test signal (three sines, a chirp and seeded
              Gaussian noise, quantised to 16 bits as pytti's decoder delivers them);
    "sos_<i>": float64 [order, 6], scipy's second-order sections of design i;
    "out_<i>": float64 [1024], sosfilt(sos_i, signal) at every 8th sample (0, 8, ...);
    metadata "designs": JSON list of {order, lo, hi} (Hz at 44.1 kHz), in index order.
tests/fixtures/audio/pulse.wav
    2 s of 44.1 kHz mono 16-bit PCM (Python's `wave` module): a 60 Hz tone whose amplitude
    pulses at 2 Hz, 0.45 * (1 - cos(2 pi 2 t)) / 2, plus a steady 3 kHz tone at 0.2.
tests/fixtures/audio/pulse_bands.json
    docs/design.md §12's per-frame values of pulse.wav at 12 fps from offset 0.25 s, computed here
    with scipy: window k (0-based) starts at floor((0.25 + k/12) * 44100) and is
    int(44100/12) = 3675 samples long; value = max|sosfilt(sos, window)| / the largest such
    peak over every whole window; windows that do not fit in the track are absent (0).

Needs scipy in the project venv: `.venv/bin/pip install scipy` (1.17.1 was used).

Run: .venv/bin/python scripts/reference/gen_audio_fixtures.py
"""

import json
import wave
from pathlib import Path

import numpy as np
import scipy
from safetensors.numpy import save_file
from scipy.signal import butter, sosfilt

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio"
SR = 44100
NYQ = SR / 2

# (order, lo Hz, hi Hz): orders 1-8; low, mid and high bands; narrow and wide.
DESIGNS = [
    (1, 40.0, 80.0),
    (2, 70.0, 90.0),
    (3, 200.0, 4000.0),
    (4, 2500.0, 3500.0),
    (5, 20.0, 20000.0),
    (6, 70.0, 90.0),
    (6, 1000.0, 1100.0),
    (7, 8000.0, 16000.0),
    (8, 40.0, 80.0),
    (8, 15000.0, 21000.0),
    (2, 5.0, 21500.0),
    (4, 300.0, 3400.0),
]
N = 8192
STRIDE = 8

# The pulse file and its band values.
PULSE_SECONDS = 2.0
FPS = 12.0
OFFSET = 0.25
BANDS = [("bass", 60.0, 40.0, 4), ("hiss", 3000.0, 1000.0, 6)]  # name, f_center, f_width, order


def signal():
    rng = np.random.default_rng(17)
    t = np.arange(N) / SR
    x = (
        0.30 * np.sin(2 * np.pi * 60 * t)
        + 0.20 * np.sin(2 * np.pi * 1050 * t + 0.3)
        + 0.15 * np.sin(2 * np.pi * 12000 * t + 1.1)
        + 0.10 * np.sin(2 * np.pi * (100 + 20000 * t / t[-1] / 2) * t)
        + 0.05 * rng.standard_normal(N)
    )
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def pulse():
    t = np.arange(int(PULSE_SECONDS * SR)) / SR
    env = 0.45 * (1 - np.cos(2 * np.pi * 2 * t)) / 2
    x = env * np.sin(2 * np.pi * 60 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)
    return np.round(x * 32767).astype(np.int16)


def write_wav(path, samples):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(samples.astype("<i2").tobytes())


def band_values(samples):
    window = int(1 / FPS * SR)
    starts = []
    k = 0
    while True:
        s0 = int(np.floor((OFFSET + k / FPS) * SR + 1e-6))
        if s0 + window > len(samples):
            break
        starts.append(s0)
        k += 1
    x = samples.astype(np.float64)
    out = {}
    for name, fc, fw, order in BANDS:
        sos = butter(order, [(fc - fw / 2) / NYQ, (fc + fw / 2) / NYQ], btype="bandpass", output="sos")
        peaks = np.array([np.max(np.abs(sosfilt(sos, x[s : s + window]))) for s in starts])
        out[name] = (peaks / peaks.max()).tolist()
    return {
        "fps": FPS,
        "offset": OFFSET,
        "window": window,
        "starts": starts,
        "filters": [
            {"variable_name": n, "f_center": fc, "f_width": fw, "order": o} for n, fc, fw, o in BANDS
        ],
        "values": out,
    }


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    x = signal()
    tensors = {"signal": x}
    for i, (order, lo, hi) in enumerate(DESIGNS):
        sos = butter(order, [lo / NYQ, hi / NYQ], btype="bandpass", output="sos")
        tensors[f"sos_{i}"] = np.ascontiguousarray(sos, dtype=np.float64)
        tensors[f"out_{i}"] = np.ascontiguousarray(sosfilt(sos, x)[::STRIDE], dtype=np.float64)
    designs = [{"order": o, "lo": lo, "hi": hi} for o, lo, hi in DESIGNS]
    save_file(
        tensors,
        str(OUT / "filters.safetensors"),
        metadata={"designs": json.dumps(designs), "stride": str(STRIDE), "scipy": scipy.__version__},
    )
    p = pulse()
    write_wav(OUT / "pulse.wav", p)
    with open(OUT / "pulse_bands.json", "w") as f:
        json.dump(band_values(p), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
