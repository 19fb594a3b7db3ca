#!/usr/bin/env bash
# Set up, then run the main job on Fashion-MNIST from one pipeline file (examples/fashion-mnist.toml):
# teacher, random images at IPC 1 and 10, soft labels, compressed labels, students. The results table goes to
# the terminal; the report (report.md, report.json, plots) to runs/fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
pipeline=examples/fashion-mnist.toml
if [ ! -d /usr/share/datasets/fashion-mnist ]; then  # no Debian package here: let the teacher stage download
  pipeline=runs/fashion-mnist-download.toml
  mkdir -p runs
  sed 's/^data = "fashion-mnist"$/&\ndownload = true/' examples/fashion-mnist.toml > "$pipeline"
fi
.venv/bin/dcond run "$pipeline"
