"""The whole pipeline on an ImageFolder shaped like ImageNet-1k (issue #20): 1,000 classes of 224-px JPEGs laid
out as `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG`, with a tiny ConvNet, one image per class and few epochs.
It shows that every stage runs at that shape, and what each costs in time and peak memory on this machine.

teacher (train-teacher, 1 epoch) -> select --method rded -> relabel -> compress-labels prune+topk+quantize
-> train-student.

Usage: python benchmarks/imagenet_shape.py [--classes 1000] [--size 224] [--per-class 4] [--work DIR]
"""

import argparse
import tempfile
from pathlib import Path

from common import machine
from memory import measured
from stage_costs import make_folder

TINY = ["--model", "convnet", "--model-opt", "width=16", "--model-opt", "depth=4"]


def imagenet_layout(root: Path, classes: int, size: int, per_class: int) -> Path:
    """train/ and val/ with WordNet-style class folders (n00000000, …), as ImageNet is unpacked."""
    make_folder(root, classes, size, per_class=per_class, test_per_class=1, suffix=".JPEG")
    (root / "test").rename(root / "val")
    for split in ("train", "val"):
        for folder in sorted((root / split).iterdir()):
            folder.rename(folder.with_name(f"n{int(folder.name.split('_')[1]):08d}"))
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--per-class", type=int, default=4, help="training images per class (RDED at factor 2 "
                                                                     "takes one crop from each of 4 images)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dcond-imagenet-shape-"))
    data = work / "imagenet"
    if not data.exists():
        imagenet_layout(data, args.classes, args.size, args.per_class)
    cpu = ["--device", "cpu", "--force"]
    stages = [
        ("train-teacher --epochs 1", ["train-teacher", "--data", data, "--image-size", args.size, *TINY,
                                      "--epochs", 1, "--batch-size", 64, *cpu, "--out", work / "teacher"]),
        ("select --method rded --ipc 1", ["select", work / "teacher", "--method", "rded", "--ipc", 1, *cpu,
                                          "--out", work / "images"]),
        ("relabel --epochs 2", ["relabel", work / "images", "--teacher", work / "teacher", "--epochs", 2, *cpu,
                                "--out", work / "labels"]),
        ("compress-labels prune+topk+quantize", ["compress-labels", work / "labels", "--method",
                                                 "prune+topk+quantize", "--keep", 0.5, "--k", 10, "--force",
                                                 "--out", work / "small"]),
        ("train-student --epochs 1", ["train-student", work / "small", *TINY, "--epochs", 1, *cpu,
                                      "--out", work / "student"]),
    ]
    rows = []
    for name, command in stages:
        rows.append((name, *measured(*command)))
        print(rows[-1], flush=True)
    print(f"\n{args.classes} classes, {args.size}-px JPEGs ({args.per_class} train, 1 val per class), "
          f"ConvNet width 16, depth 4; {machine()}\n")
    print("| stage | seconds | peak RSS (MB) |\n|---|---|---|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.1f} | {rss:,.0f} |")


if __name__ == "__main__":
    main()
