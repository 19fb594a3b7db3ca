"""How far a condensed set's images lie from another set's, pixel by pixel: for a method that refines real images
(EDC), how far it moved them from where it started (`select --method random` of the same seed draws EDC's start).

Usage: .venv/bin/python benchmarks/moved.py START SET [SET ...]
Prints, per SET, the mean, median and 95th percentile of the absolute difference SET − START in pixel levels
(0–255) and the share of pixels that moved by more than 8 levels. Both sets must hold the same classes and
images per class; images are compared in class order, and within a class in the order they were written.
"""

import argparse
from pathlib import Path

import torch

from dcond.data import load_all
from dcond.data.folder import ArtifactImages


def class_major(path: Path) -> torch.Tensor:
    """The images of a dcond images or labels artifact, as floats, class by class."""
    images = load_all(ArtifactImages(path).split("train"))
    return images.images[torch.argsort(images.labels, stable=True)].float()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("start", type=Path)
    parser.add_argument("sets", type=Path, nargs="+")
    args = parser.parse_args()
    start = class_major(args.start)
    print("| set | mean abs. difference | median | p95 | pixels moved > 8 |\n|---|---|---|---|---|")
    for path in args.sets:
        moved = class_major(path)
        if moved.shape != start.shape:
            raise SystemExit(f"{path} holds {tuple(moved.shape)} images, {args.start} {tuple(start.shape)}")
        d = (moved - start).abs().flatten()
        # quantile() refuses tensors beyond 16M values: for larger sets the median and p95 come from a random
        # sample of 10M (for smaller ones the permutation only reorders the values)
        sample = d[torch.randperm(len(d), generator=torch.Generator().manual_seed(0))[:10_000_000]]
        print(f"| {path.name} | {d.mean():.2f} | {sample.median():.0f} | {sample.quantile(0.95):.0f} | "
              f"{(d > 8).float().mean():.1%} |")


if __name__ == "__main__":
    main()
