#!/usr/bin/env bash
# The GPU checks (docs/benchmarks.md, "GPU") in one time-boxed run. Each part has its own box, all share one budget
# (GPU_BUDGET_S, default 580 s), and each writes to $OUT/gpu.log as it goes, so a part cut off leaves the others.
# On the device machine, from the project root, after the setup line of ../shared/tools/prepare-gpu-run.sh:
#   bash benchmarks/gpu.sh [PART ...]     (parts: install info cuda suite pipeline throughput decode
# costs sre2l; default all, run in that order)
# The official SRe2L comparison needs its patched recover script in .gpu/sre2l (see docs/benchmarks.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/dcond-gpu}
mkdir -p "$OUT"
LOG=$OUT/gpu.log
START=$(date +%s)
BUDGET=${GPU_BUDGET_S:-580}
PARTS=${*:-install info cuda suite pipeline throughput decode costs sre2l}
export PYTHONUNBUFFERED=1

part() {  # part NAME SECONDS COMMAND...: COMMAND for at most SECONDS, less when the budget runs short
  local name=$1 box=$2 left
  shift 2
  [[ " $PARTS " == *" $name "* ]] || return 0
  left=$((BUDGET - ($(date +%s) - START)))
  ((box > left)) && box=$left
  if ((box < 15)); then echo "=== $name: skipped, budget spent" | tee -a "$LOG"; return 0; fi
  echo "=== $name (box ${box} s) at $(date +%T)" | tee -a "$LOG"
  local t0=$SECONDS
  timeout --kill-after=5 "$box" "$@" >>"$LOG" 2>&1
  echo "=== $name: exit $?, $((SECONDS - t0)) s" | tee -a "$LOG"
}

info() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, torchvision as tv; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
      'cuDNN', torch.backends.cudnn.version(), 'torchvision', tv.__version__, torch.cuda.get_device_name())"
  echo "CPU cores: $(nproc)"
  for i in 1 2 3; do TIMEFORMAT="import torch: %R s"; time python3 -c "import torch"; done
  for i in 1 2 3; do TIMEFORMAT="import dcond.cli: %R s"; time python3 -c "import dcond.cli"; done
}

pipeline() {  # the README's main job, the FMNIST example, in a fresh cache; then its results table
  rm -rf /tmp/fm-cache /tmp/fm-report
  TIMEFORMAT="example pipeline wall: %R s"
  time python3 -m dcond run examples/fashion-mnist.toml --jobs 6 --cache /tmp/fm-cache --out /tmp/fm-report
  cp /tmp/fm-report/report.md "$OUT/pipeline-report.md"
}

export -f info pipeline
# dcond installed as a user installs it (its console script beside python3: the tests of the installed command
# need it), from this checkout, with no index: the machine has every dependency but zstandard (carried as a wheel)
part install 60 python3 -m pip install -q --no-deps --no-build-isolation --no-index .
part info 40 bash -c info
# a test that hangs fails after 90 s where pytest-timeout is installed, so the run still ends with its report
TIMEOUT=$(python3 -c "import pytest_timeout" 2>/dev/null && echo "--timeout=90")
part cuda 60 python3 -m pytest -v -n 4 -p no:cacheprovider -rfE $TIMEOUT tests/test_cuda.py
part suite 240 python3 -m pytest -v -n 14 -p no:cacheprovider -rfE $TIMEOUT --ignore=tests/test_cuda.py
part pipeline 130 bash -c pipeline
part throughput 120 bash -c "cd benchmarks && python3 throughput.py --epochs 48 --repeats 5"
part decode 40 bash -c "cd benchmarks && python3 decode.py --images 1000 --repeats 3"
part costs 150 bash -c "cd benchmarks && python3 stage_costs.py --repeats ${COST_REPEATS:-1} --iterations 10 30"
part sre2l 30 bash -c "ITERS=40 bash .gpu/sre2l/run.sh"
echo "=== done in $(($(date +%s) - START)) s" | tee -a "$LOG"
grep -E '^(\||===|example pipeline|import |SRE2L|torch |CPU|NVIDIA|name|repeat|whole:|central|[0-9]+ (passed|failed)|FAILED|ERROR)|passed|failed' "$LOG" | tail -90
