"""Peak memory and time per image of the bank stages as the condensed set and the bank grow (issue #20).

Makes a generated ImageFolder of 64-px JPEGs with 1,000 classes (10 per class; 1 test image per class), imports
an untrained ConvNet of width 16 as the teacher (`train-teacher --epochs 0 --weights`; small, so that the CPU's
time goes to what grows with the work), then, as subprocesses, for each IPC in --ipc: `select --method random`,
`relabel --epochs E`, `train-student --epochs 1 --no-eval`; and for each bank length in --bank-epochs (at the
smallest IPC): `relabel` and `compress-labels` with each method. Peak RSS is the child's own (wait4's
ru_maxrss); time is its wall time over the images (or views) it handled.

Usage: python benchmarks/memory.py [--classes 1000] [--size 64] [--ipc 2 10] [--epochs 2] [--bank-epochs 2 10]
       [--work DIR]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import save_file

from common import DCOND, machine
from dcond.models import ModelSpec, create_model, state_tensors
from stage_costs import make_folder

MODEL = ["--model", "convnet", "--model-opt", "width=16"]
COMPRESSIONS = {"prune 10%": ["prune"], "top-10 int8": ["topk+quantize", "--k", 10],
                "rank-2": ["lowrank", "--rank", 2]}


def measured(*args) -> tuple[float, float]:
    """Run `dcond ARGS`: (wall seconds, peak RSS in MB of that process)."""
    t0 = time.perf_counter()
    child = subprocess.Popen([*DCOND, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: dcond {' '.join(map(str, args))}\n{child.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024  # Linux reports KB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ipc", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--epochs", type=int, default=2, help="bank epochs of the IPC rows")
    parser.add_argument("--bank-epochs", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dcond-memory-"))
    folder = work / "data"
    if not folder.exists():
        make_folder(folder, args.classes, args.size, per_class=max(args.ipc), test_per_class=1, suffix=".JPEG")
    weights, teacher = work / "convnet.safetensors", work / "teacher"
    save_file(state_tensors(create_model(ModelSpec("convnet", 3, args.classes, args.size, {"width": 16}))), weights)
    cpu = ["--device", "cpu", "--force"]
    measured("train-teacher", "--data", folder, "--image-size", args.size, *MODEL, "--epochs", 0,
             "--weights", weights, *cpu, "--out", teacher)
    rows = []
    for ipc in args.ipc:
        n = ipc * args.classes
        images, labels = work / f"images{ipc}", work / f"labels{ipc}"
        for stage, command, count in (
                ("select random", ["select", teacher, "--method", "random", "--ipc", ipc, "--out", images], n),
                (f"relabel --epochs {args.epochs}", ["relabel", images, "--teacher", teacher, "--epochs", args.epochs,
                                                     "--out", labels], n * args.epochs),
                ("train-student --epochs 1", ["train-student", labels, *MODEL, "--epochs", 1,
                                              "--no-eval", "--out", work / f"student{ipc}"], n)):
            seconds, rss = measured(*command, *cpu)
            rows.append((stage, f"IPC {ipc} ({n:,} images)", rss, seconds / count * 1000))
            print(rows[-1], flush=True)
    ipc = min(args.ipc)
    for epochs in args.bank_epochs:
        labels = work / f"bank{epochs}"
        measured("relabel", work / f"images{ipc}", "--teacher", teacher, "--epochs", epochs, *cpu, "--out", labels)
        for name, method in COMPRESSIONS.items():
            seconds, rss = measured("compress-labels", labels, "--method", *method, "--force",
                                    "--out", work / f"bank{epochs}-{method[0]}")
            views = epochs * ipc * args.classes
            rows.append((f"compress-labels {name}", f"{epochs} epochs ({views:,} views)", rss, seconds / views * 1000))
            print(rows[-1], flush=True)
    print(f"\n{args.classes} classes, {args.size}-px JPEGs, convnet width 16; {machine()}\n")
    print("| stage | work | peak RSS (MB) | ms per image or view |\n|---|---|---|---|")
    for stage, work_done, rss, ms in rows:
        print(f"| {stage} | {work_done} | {rss:,.0f} | {ms:.3f} |")


if __name__ == "__main__":
    main()
