"""Overhead of relabel and train-student against the bare loops they wrap, at ImageNet shape, on CPU or GPU.

Each repeat measures, in one process and at one batch size: the teacher's bare forward (bf16 autocast and
channels-last on CUDA, as the stages run it) against `write_bank` (views drawn, rendered, labelled and
stored), and the student's bare train step (forward, KL to fixed logits, backward, AdamW) against `fit`
replaying that bank. The first repeat is a warm-up (cuDNN's algorithm search, allocator growth) and is
not counted. Generated images; the networks are untrained (speed does not depend on the weights).

Usage: python benchmarks/throughput.py [--device auto] [--model tv:resnet18] [--size 224] [--classes 100]
       [--images 1024] [--batch 256] [--epochs 8] [--repeats 4]
Small CPU run: python benchmarks/throughput.py --size 32 --images 256 --batch 64 --epochs 2 --repeats 2
Prints a markdown table: median rates over the counted repeats and the median of the per-repeat ratios.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from common import machine
from dcond.artifact import ArtifactWriter, open_artifact
from dcond.bank import open_bank
from dcond.data import DatasetSpec, TensorImages, to_input
from dcond.data.augment import ViewConfig, apply_views, draw_epoch, epoch_generator
from dcond.engine import autocast, make_optimizer, place, resolve_device
from dcond.models import ModelSpec, create_model
from dcond.stages.relabel import RelabelConfig, write_bank
from dcond.stages.student import Replay, StudentConfig, fit


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn, images_per_call: int, calls: int, device: torch.device) -> float:
    """Images per second of `calls` calls of `fn`, after one warm-up call, the device drained at both ends."""
    fn()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return images_per_call * calls / (time.perf_counter() - t0)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def generated(args) -> tuple[DatasetSpec, TensorImages]:
    gen = torch.Generator().manual_seed(0)
    spec = DatasetSpec("generated", tuple(f"c{i}" for i in range(args.classes)), 3, args.size,
                       (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    images = torch.randint(0, 256, (args.images, 3, args.size, args.size), dtype=torch.uint8, generator=gen)
    return spec, TensorImages(images, torch.arange(args.images) % args.classes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="tv:resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    device = resolve_device(args.device)
    spec, data = generated(args)
    model_spec = ModelSpec(args.model, 3, args.classes, args.size)
    teacher = place(create_model(model_spec), device).eval()
    student = place(create_model(model_spec), device)
    x = to_input(data.images[:args.batch].to(device), spec)
    soft = torch.randn(args.batch, args.classes, device=device)
    images = to_input(data.images.to(device), spec)
    calls = args.epochs * -(-args.images // args.batch)

    @torch.no_grad()
    def forward():
        with autocast(device):
            teacher(x).float()

    optimizer = make_optimizer("adamw", student.parameters(), 1e-3, 0.01, device=device)

    def train_step():
        with autocast(device):
            out = student(x).float()
        loss = F.kl_div(F.log_softmax(out / 4, 1), F.log_softmax(soft / 4, 1), log_target=True,
                        reduction="batchmean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    views = draw_epoch(len(data), args.batch, ViewConfig(), args.size, epoch_generator(0, 0))

    def render():  # what relabel does besides the forward: draw nothing, render one batch of views
        apply_views(images, views.batch(0))

    relabel_cfg = RelabelConfig(epochs=args.epochs, batch_size=args.batch, device=str(device.type))
    student_cfg = StudentConfig(epochs=args.epochs, device=str(device.type), evaluate=False)
    digest = SimpleNamespace(digest="generated")  # what write_bank records of its teachers
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats + 1):
            bare_fwd = rate(forward, args.batch, calls, device)
            rendering = rate(render, args.batch, calls, device)
            with ArtifactWriter(Path(tmp) / f"labels{r}", "labels", spec, stage="bench", config={}) as w:
                w.section["count"] = len(data)
                relabel_s = timed(lambda: write_bank(w, data, [digest], [teacher], relabel_cfg), device)
            bare_train = rate(train_step, args.batch, calls, device)
            labels = Replay(open_bank(open_artifact(w.out)), images, data.labels, student_cfg, device)
            train_s = timed(lambda: fit(student, labels, student_cfg, device), device)
            n_views = len(data) * args.epochs
            row = (bare_fwd, n_views / relabel_s, bare_train, n_views / train_s, rendering)
            print(f"repeat {r}{' (warm-up)' if r == 0 else ''}: " + ", ".join(f"{v:.0f}" for v in row), flush=True)
            if r:
                rows.append(row)
    med = [statistics.median(col) for col in zip(*rows)]
    ratio_relabel = statistics.median(r[1] / r[0] for r in rows)
    ratio_train = statistics.median(r[3] / r[2] for r in rows)
    print(f"\n{args.model}, {args.size} px, {len(data)} images of {args.classes} classes, batch {args.batch}, "
          f"{args.epochs} epochs per repeat, {args.repeats} repeats after a warm-up; {machine(device)}\n")
    print("| measurement | images/s (median) | ratio (median) |\n|---|---|---|")
    print(f"| teacher bare forward | {med[0]:.0f} | |")
    print(f"| rendering views alone (`apply_views`: gather, crop-resize, flip, CutMix) | {med[4]:.0f} | |")
    print(f"| relabel (`write_bank`: views drawn, rendered, labelled, stored) | {med[1]:.0f} | {ratio_relabel:.0%} |")
    print(f"| student bare train step (forward, KL, backward, AdamW) | {med[2]:.0f} | |")
    print(f"| train-student (`fit` replaying the bank) | {med[3]:.0f} | {ratio_train:.0%} |")


if __name__ == "__main__":
    main()
