"""What one train-student checkpoint costs: seconds to save and to load, and bytes, for students of the two
shapes dcond is used at (a ConvNet on 28-pixel images, a ResNet-18 on ImageNet-1k). The checkpoint holds what a
resumed run needs (weights, AdamW moments, the EMA of the weights, the random state), as `train-student` saves it
every `--checkpoint-seconds`; the cost over a run is at most save seconds / checkpoint seconds.

Usage: python benchmarks/checkpoint_cost.py [--repeats 5] [--device auto]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import machine
from dcond.checkpoint import CHECKPOINT
from dcond.engine import decay_groups, make_optimizer, place, resolve_device
from dcond.models import ModelSpec, create_model
from dcond.stages.student import _ema, _resume, _save

SHAPES = {"convnet, Fashion-MNIST": ModelSpec("convnet", 1, 10, 28, {"width": 64}),
          "resnet18, ImageNet-1k": ModelSpec("resnet18", 3, 1000, 224, {})}


def trained_state(spec: ModelSpec, device: torch.device):
    """A student after one AdamW step, with an EMA: every part of the state a checkpoint holds is filled in."""
    model = place(create_model(spec), device)
    optimizer = make_optimizer("adamw", decay_groups(model, 0.01, False), 1e-3, 0.01, device=device)
    ema = _ema(model, 0.99)
    x = torch.randn(2, spec.in_chans, spec.image_size, spec.image_size, device=device)
    model(x).square().mean().backward()
    optimizer.step()
    ema.update_parameters(model)
    return model, optimizer, ema


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"{machine(device)}, median of {args.repeats}\n")
    print("| student | checkpoint MB | save s | load s |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CHECKPOINT
        for name, spec in SHAPES.items():
            model, optimizer, ema = trained_state(spec, device)
            save_s = timed(lambda: _save(path, model, optimizer, ema, None, {"epoch": 1, "step": 1}, device),
                           args.repeats)
            load_s = timed(lambda: _resume(path, model, optimizer, ema, None, device), args.repeats)
            print(f"| {name} | {path.stat().st_size / 2**20:.1f} | {save_s:.3f} | {load_s:.3f} |")


if __name__ == "__main__":
    main()
