#!/usr/bin/env bash
# The main job: set up (idempotent), build, and dry-run the example scene.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --locked --release -- plan scenes/spring_to_winter.toml "$@"
