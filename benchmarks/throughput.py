"""Overhead benchmark: relabel against the teacher's bare forward pass, and student training against the
student's bare forward+backward pass, each pair measured in the same process at the same batch size.

Usage: .venv/bin/python benchmarks/throughput.py TEACHER IMAGES [--repeats 5] [--epochs 20]
(IMAGES: an images artifact, e.g. from `dcond select TEACHER --ipc 10`). Prints a markdown table with the
median rates over the repeats and the median of the per-repeat ratios.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import machine
from dcond.artifact import ArtifactWriter, open_artifact
from dcond.bank import open_bank
from dcond.data import load_all, to_input
from dcond.data.folder import ArtifactImages
from dcond.models import ModelSpec, create_model, load_teachers
from dcond.stages.relabel import RelabelConfig, default_batch_size, write_bank
from dcond.stages.student import Replay, StudentConfig, fit

CPU = torch.device("cpu")


def rate(fn, images_per_call: int, calls: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return images_per_call * calls / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("teacher", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    arts, (teacher,) = load_teachers([args.teacher])
    teacher.eval()
    data = load_all(ArtifactImages(args.images).split("train"))
    spec = arts[0].dataset
    batch = default_batch_size(len(data))
    x = to_input(data.images[:batch], spec)
    student = create_model(ModelSpec("convnet", spec.channels, spec.num_classes, spec.image_size))
    relabel_cfg = RelabelConfig(epochs=args.epochs, batch_size=batch, device="cpu")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            with torch.no_grad():
                bare_fwd = rate(lambda: teacher(x), batch, 4 * args.epochs)
            with ArtifactWriter(Path(tmp) / f"labels{r}", "labels", spec, stage="bench", config={}) as w:
                t0 = time.perf_counter()
                write_bank(w, data, arts, [teacher], relabel_cfg)
                relabel_rate = len(data) * args.epochs / (time.perf_counter() - t0)

            def step():
                F.cross_entropy(student(x), data.labels[:batch]).backward()

            bare_train = rate(step, batch, 4 * args.epochs)
            labels = Replay(open_bank(open_artifact(w.out)), to_input(data.images, spec), data.labels,
                            StudentConfig(epochs=args.epochs), CPU)
            t0 = time.perf_counter()
            fit(student, labels, StudentConfig(epochs=args.epochs, device="cpu"), CPU)
            train_rate = len(data) * args.epochs / (time.perf_counter() - t0)
            rows.append((bare_fwd, relabel_rate, bare_train, train_rate))
    med = [statistics.median(col) for col in zip(*rows)]
    ratio_relabel = statistics.median(r[1] / r[0] for r in rows)
    ratio_train = statistics.median(r[3] / r[2] for r in rows)
    print(f"{len(data)} images, batch {batch}, {args.epochs} epochs per repeat, {args.repeats} repeats, {machine()},"
          f" {torch.get_num_threads()} threads\n")
    print("| measurement | images/s (median) | ratio (median) |\n|---|---|---|")
    print(f"| teacher bare forward | {med[0]:.0f} | |")
    print(f"| relabel (views, crops, mixes, forward, bank writes) | {med[1]:.0f} | {ratio_relabel:.0%} |")
    print(f"| student bare forward+backward | {med[2]:.0f} | |")
    print(f"| train-student replaying the bank (incl. optimizer step) | {med[3]:.0f} | {ratio_train:.0%} |")


if __name__ == "__main__":
    main()
