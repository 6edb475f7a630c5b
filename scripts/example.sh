#!/usr/bin/env bash
# The main job: set up (idempotent), build, generate the untrained tiny models
# (no network needed), and render the quick-start scene into out/quickstart*/.
# It uses the same (dev) build as the tests, so one compile serves both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked
./target/debug/zoetrope weights tiny
./target/debug/zoetrope render scenes/quickstart.toml "$@"
