#!/usr/bin/env bash
# Installs everything zoetrope needs on a fresh Debian machine, idempotently:
#   - Debian packages: FFmpeg 5.1 development libraries, pkg-config, clang (for bindgen)
#   - .venv: a project-local virtualenv holding PyTorch 2.11.0 (libtorch for tch 0.24),
#     plus safetensors and numpy for `zoetrope weights import`
#   - .libtorch: a stable link to that libtorch, read by .cargo/config.toml
# Re-running it when everything is in place takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
SAFETENSORS_VERSION=0.8.0
CUDA_CRT_VERSION=13.0.88
NUMPY_VERSION=2.4.6
APT_PACKAGES=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev
              libavdevice-dev libswresample-dev pkg-config clang libclang-dev)

log() { echo "[setup] $*" >&2; }

# `setup.sh --test` also installs Chromium, which the grid viewer's browser test drives.
[ "${1:-}" = "--test" ] && APT_PACKAGES+=(chromium)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
have=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)
if [ "${have%%+*}" != "$TORCH_VERSION" ]; then
  log "installing torch==$TORCH_VERSION into .venv (about 4.6 GB with its CUDA libraries)"
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
fi
# `weights import` converts PyTorch archives with the venv's torch and writes
# them with safetensors; numpy lets torch read checkpoints that pickle arrays.
if ! .venv/bin/python -c 'import safetensors, numpy' 2>/dev/null; then
  log "installing safetensors and numpy into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check "safetensors==$SAFETENSORS_VERSION" "numpy==$NUMPY_VERSION"
fi
# The CUDA runtime headers' compiler-config part (crt/), which the torch
# wheel's nvidia-cuda-runtime lacks: build.rs compiles the C++ shim (csrc/:
# CUDA graphs, allocator statistics, lean convolutions) against libtorch's
# CUDA headers with it.
if ! ls .venv/lib/python3*/site-packages/nvidia/cu13/include/crt/host_config.h >/dev/null 2>&1; then
  log "installing nvidia-cuda-crt==$CUDA_CRT_VERSION into .venv (CUDA headers for the C++ shim)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "nvidia-cuda-crt==$CUDA_CRT_VERSION"
fi
torch_dir=$(echo .venv/lib/python3*/site-packages/torch)
if [ ! -f "$torch_dir/lib/libtorch_cpu.so" ]; then
  log "error: $torch_dir/lib/libtorch_cpu.so not found; delete .venv and re-run scripts/setup.sh"
  exit 1
fi
if [ "$(readlink .libtorch 2>/dev/null || true)" != "$torch_dir" ]; then
  ln -sfn "$torch_dir" .libtorch
fi
