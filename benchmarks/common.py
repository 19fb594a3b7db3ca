"""Helpers for the benchmark scripts: run dcond commands, time them, summarise repeated runs."""

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

# the installed script, or (where dcond is on PYTHONPATH only, as on the GPU machine) the module
DCOND = [str(Path(sys.executable).parent / "dcond")] if (Path(sys.executable).parent / "dcond").exists() else \
    [sys.executable, "-m", "dcond"]
OUT = Path(os.environ.get("DCOND_BENCH_OUT", Path(__file__).parent / "out"))


def dcond(*args, log: Path | None = None, threads: int | None = None) -> tuple[str, float]:
    """Run `dcond ARGS` (with THREADS CPU threads, where given); return its stdout (the artifact path) and its wall
    time in seconds."""
    cmd = [*DCOND, *map(str, args)]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)} if threads else None
    print("$ dcond " + " ".join(shlex.quote(str(a)) for a in args), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=open(log, "a") if log else None, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"benchmark step failed: {' '.join(cmd)}")
    return r.stdout.strip(), elapsed


def step(out: Path, *args, threads: int | None = None) -> str:
    """`dcond ARGS --out OUT`, unless OUT holds the artifact of an earlier run: an interrupted benchmark
    continues where it stopped (delete its output folder to start afresh)."""
    done = (Path(out) / "dcond.json").exists()
    return str(out) if done else dcond(*args, "--out", out, "--force", threads=threads)[0]


def metrics(path: str) -> dict:
    """A model's metrics on the split its chain measures on: the test split, or the validation split of a chain
    made with `train-teacher --validation`."""
    m = json.loads((Path(path) / "metrics.json").read_text())
    return next(v for k, v in m.items() if k.endswith((":test", ":validation")))


def best_of_last(path: str) -> float | None:
    """The best evaluation of a run's last epochs, where its recipe records one apart (`--best-of-last`)."""
    m = json.loads((Path(path) / "metrics.json").read_text())
    return next((v["top1"] for k, v in m.items() if ":best-of-last-" in k), None)


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine(device=None) -> str:
    """What a figure was measured on: the GPU with torch's CUDA version, or the CPU."""
    import torch

    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


# The best soft-label settings found on Fashion-MNIST IPC 10 (docs/benchmarks.md, "Student settings"): EDC's
# weaker crops for the views and a higher student learning rate.
RELABEL_FLAGS = ["--crop-scale", "0.5", "1"]
STUDENT_FLAGS = ["--lr", "0.003"]
