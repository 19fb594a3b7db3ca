#!/usr/bin/env bash
# Set up dcond in ./.venv: a matching torch/torchvision pair from the registry, dcond with its test tools and
# `datasets` (for --data hf:…), and Fashion-MNIST from Debian where this machine can install it. Safe to rerun;
# quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.dcond-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing torch, torchvision and dcond into .venv (about two minutes)" >&2
  # The machine's own CPU-only torch cannot load torchvision's compiled ops: install them as a pair.
  .venv/bin/python -m pip install -q "torch==2.14.*" "torchvision==0.29.*" -e ".[test,hf]" 1>&2
  echo "$want" > "$stamp"
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  { apt-get install -y dataset-fashion-mnist || { apt-get update && apt-get install -y dataset-fashion-mnist; }; } \
    1>&2 || echo "could not install dataset-fashion-mnist; dcond will download Fashion-MNIST instead" >&2
fi
