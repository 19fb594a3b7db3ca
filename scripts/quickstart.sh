#!/usr/bin/env bash
# Set up, then run the main job on Fashion-MNIST: train a teacher, evaluate it, show what was made.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
download=()
[ -d /usr/share/datasets/fashion-mnist ] || download=(--download)
.venv/bin/dcond train-teacher --data fashion-mnist "${download[@]}" --model-opt width=64 --epochs 6 \
  | .venv/bin/dcond evaluate \
  | .venv/bin/dcond inspect
