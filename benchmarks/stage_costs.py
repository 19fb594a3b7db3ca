"""Fixed cost of each stage (start, imports, loading) and synthesis speed, at ImageNet shape, as a user runs them.

Makes a generated 224-px ImageFolder (train/ and test/), imports an untrained torchvision ResNet-18 as the
teacher (`train-teacher --epochs 0 --weights`), then times each command as a subprocess, `--repeats` times:
- the import of the CLI alone, and each stage with the least work it can do (one epoch, one image per class),
  whose wall time bounds its fixed cost from above;
- synthesize (sre2l; edc from real images) with few and with more iterations: the difference gives seconds
  per iteration without the fixed cost, the batch being the recipe's (sre2l: 100 images).

Usage: python benchmarks/stage_costs.py [--size 224] [--classes 100] [--repeats 3] [--iterations 10 30]
       [--device auto] [--work DIR]
Small CPU run: python benchmarks/stage_costs.py --size 32 --classes 10 --repeats 1 --iterations 2 4
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import save_file

from common import DCOND, machine
from dcond.engine import resolve_device
from dcond.models import ModelSpec, create_model, state_tensors


def make_folder(root: Path, classes: int, size: int, per_class: int, test_per_class: int,
                suffix: str = ".png") -> Path:
    """Smooth random images (noise upsampled 8×), so that PNG coding costs what it does for photos; `suffix`
    picks the format (".JPEG": as ImageNet's files are named)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c in range(classes):
            folder = root / split / f"class_{c:04d}"
            folder.mkdir(parents=True)
            for i in range(n):
                small = rng.integers(0, 256, (max(1, size // 8),) * 2 + (3,), dtype=np.uint8)
                Image.fromarray(small).resize((size, size), Image.BILINEAR).save(folder / f"{i}{suffix}")
    return root


def run(*args) -> float:
    cmd = [*DCOND, *map(str, args)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return elapsed


def median_of(repeats: int, fn) -> float:
    return statistics.median(fn() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, nargs=2, default=(10, 30))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    work = args.work or Path(tempfile.mkdtemp(prefix="dcond-costs-"))
    folder = make_folder(work / "data", args.classes, args.size, per_class=2, test_per_class=1)
    weights = work / "resnet18.safetensors"
    save_file(state_tensors(create_model(ModelSpec("tv:resnet18", 3, args.classes, args.size))), weights)
    dev = ["--device", args.device]
    teacher, images, labels = work / "teacher", work / "images", work / "labels"
    rows: list[tuple[str, float]] = []

    def cost(name: str, *command) -> None:
        again = ["--force"] if "--out" in command else []  # each repeat replaces the artifact of the last
        rows.append((name, median_of(args.repeats, lambda: run(*command, *again))))
        print(f"{name}: {rows[-1][1]:.2f} s", flush=True)

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import dcond.cli"], check=True)
    rows.append(("import dcond.cli (python -c)", time.perf_counter() - t0))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    rows.append(("import torch (python -c)", time.perf_counter() - t0))
    cost("train-teacher --epochs 0 --weights (import; statistics of 2 images/class; test split)", "train-teacher",
         "--data", folder, "--image-size", args.size, "--model", "tv:resnet18", "--epochs", 0,
         "--weights", weights, *dev, "--out", teacher)
    cost("select --method random --ipc 1", "select", teacher, "--method", "random", "--ipc", 1, *dev, "--out", images)
    cost("relabel --epochs 1", "relabel", images, "--teacher", teacher, "--epochs", 1, *dev, "--out", labels)
    cost("train-student --epochs 1 --no-eval", "train-student", labels, "--model", "tv:resnet18", "--epochs", 1,
         "--no-eval", *dev, "--out", work / "student")
    cost("evaluate (the test split: 1 image/class)", "evaluate", teacher, *dev)
    few, many = args.iterations
    for method, extra in (("sre2l", []), ("edc", ["--init", images])):
        t_few, t_many = (median_of(args.repeats, lambda n=n: run("synthesize", teacher, "--method", method, "--ipc", 1,
                                                                 "--iterations", n, *extra, *dev, "--out",
                                                                 work / f"{method}{n}", "--force"))
                         for n in (few, many))
        per_it = (t_many - t_few) / (many - few)
        rows.append((f"synthesize {method}: wall at {few} iterations", t_few))
        rows.append((f"synthesize {method}: iterations/s ({few} → {many} iterations)", 1 / per_it))
        rows.append((f"synthesize {method}: fixed cost (wall at {few} − {few} iterations)", t_few - few * per_it))
        print(f"{method}: {1 / per_it:.2f} it/s", flush=True)
    print(f"\n{args.classes} classes at {args.size} px, tv:resnet18, median of {args.repeats} runs each; "
          f"{machine(device)}\n")
    print("| command | seconds (or it/s) |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.2f} |")


if __name__ == "__main__":
    main()
