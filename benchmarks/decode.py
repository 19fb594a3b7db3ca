"""Decoding ImageNet-like files as every evaluation and statistics pass does: serially, and by dcond's decoding
threads (`dcond.data.images.DECODE_THREADS`), for the training view (whole) and the test view (the central
87.5 %).

Makes `--images` JPEG files of 500×375 pixels (ImageNet's most common size), smooth random content, then
decodes them to 224 pixels in batches of 500 (evaluation's batch), `--repeats` times, the four ways interleaved
in each repeat. Prints the median images/s of each and the median of the per-repeat ratios threads : serial.

Usage: python benchmarks/decode.py [--images 1000] [--repeats 5] [--work DIR]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import dcond.data.images as images
from common import machine
from dcond.data.images import FileImages


def make_files(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (47, 63, 3), dtype=np.uint8)
        paths.append(folder / f"{i}.JPEG")
        Image.fromarray(small).resize((500, 375), Image.BILINEAR).save(paths[-1], quality=90)
    return paths


def images_per_second(files: FileImages, threads: int) -> float:
    images.DECODE_THREADS = threads
    t0 = time.perf_counter()
    for start in range(0, len(files), 500):
        files.__getitems__(range(start, min(start + 500, len(files))))
    return len(files) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    threads = images.DECODE_THREADS
    paths = make_files((args.work or Path(tempfile.mkdtemp(prefix="dcond-decode-"))) / "files", args.images)
    views = {"whole": FileImages(paths, torch.zeros(len(paths)), 3, 224),
             "central 87.5 %": FileImages(paths, torch.zeros(len(paths)), 3, 224, crop=224 / 256)}
    rates: dict[tuple[str, int], list[float]] = {(v, t): [] for v in views for t in (1, threads)}
    for _ in range(args.repeats):
        for view, t in rates:
            rates[view, t].append(images_per_second(views[view], t))
    print(f"{machine()}; {threads} decoding threads; {args.images} files of 500×375, medians of {args.repeats}")
    for view in views:
        ratios = [a / b for a, b in zip(rates[view, threads], rates[view, 1])]
        print(f"{view}: serial {statistics.median(rates[view, 1]):.0f} images/s, threads "
              f"{statistics.median(rates[view, threads]):.0f} images/s, ratio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
