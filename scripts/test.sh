#!/usr/bin/env bash
# Set up, then run the test suite (tiny generated data, plus short end-to-end runs on Fashion-MNIST subsets).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
