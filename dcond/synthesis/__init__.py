"""Synthesis by BatchNorm-statistic matching: optimise images so that a teacher's BN layers see the
statistics of real data (SRe2L and its successors).

The loop is shared: each iteration renders randomly cropped, flipped and jittered views of the images,
runs one observer network (several are cycled), and minimises cross-entropy to the target classes plus
`r_bn` times a statistics gap. A method (one module, registered in SYNTHESIZERS) says how units group the
classes, how images start, and what the statistics are compared with.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from dcond.artifact import MANIFEST, Artifact
from dcond.data import DatasetSpec, to_uint8
from dcond.data.augment import crop_boxes, resize_crops
from dcond.engine import autocast, lr_factor, set_lr
from dcond.log import progress
from dcond.models import bn_layers
from dcond.registry import Registry
from dcond.units import Unit
from dcond.validate import Fields, tensor

Stats = tuple[torch.Tensor, torch.Tensor]  # per-channel mean and (biased) variance

SYNTHESIZERS: Registry = Registry("synthesis method")


@dataclass
class Observer:
    """A teacher as synthesis sees it: its BN layers, with their running and (optionally) per-class stats."""

    model: nn.Module
    layers: list[nn.modules.batchnorm._BatchNorm]
    class_stats: list[Stats] | None  # per layer: (K×C means, K×C variances)

    @classmethod
    def from_artifact(cls, art: Artifact, model: nn.Module, device: torch.device) -> "Observer":
        named = bn_layers(model)
        class_stats = None
        stats_file = Fields(art.section, f"{art.path / MANIFEST}: model").str("bn_stats", optional=True)
        if stats_file:
            t, where = art.tensors(stats_file), str(art.path / stats_file)
            shapes = [(art.dataset.num_classes, m.num_features) for _, m in named]
            tensor(t, "count", where, (art.dataset.num_classes,), lo=0)
            class_stats = [(tensor(t, f"{n}.mean", where, shape).to(device),
                            tensor(t, f"{n}.var", where, shape, lo=0).to(device))
                           for (n, _), shape in zip(named, shapes)]
        return cls(model, [m for _, m in named], class_stats)

    def running(self, i: int) -> Stats:
        return self.layers[i].running_mean, self.layers[i].running_var

    def of_class(self, c: int) -> Callable[[int], Stats]:
        """Layer i -> the statistics of class c's real images at layer i."""
        return lambda i: (self.class_stats[i][0][c], self.class_stats[i][1][c])


@contextmanager
def captured_stats(observer: Observer) -> Iterator[list[Stats]]:
    """The batch statistics of every BN layer's input during the forward passes inside the block."""
    stats: list[Stats] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
        x = inputs[0].float()
        dims = [0, *range(2, x.ndim)]
        stats.append((x.mean(dims), x.var(dims, unbiased=False)))

    handles = [m.register_forward_pre_hook(record) for m in observer.layers]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


def stat_gap(a: Stats, b: Stats) -> torch.Tensor:
    """‖μ_a − μ_b‖₂ + ‖σ²_a − σ²_b‖₂, the per-layer gap of SRe2L."""
    return torch.norm(a[0] - b[0], 2) + torch.norm(a[1] - b[1], 2)


@dataclass
class SynthContext:
    """What a method may use while making a unit's images."""

    observers: list[Observer]
    spec: DatasetSpec
    device: torch.device
    settings: dict[str, Any]  # the resolved stage config
    init_images: dict[int, torch.Tensor] = field(default_factory=dict)  # per class, uint8, for real-image init


class Method(Protocol):
    mix_classes: bool  # units hold every class (SRe2L's mixed batches) or one class each
    needs_class_stats: bool
    real_init: bool  # starts from real images (SynthContext.init_images)
    defaults: dict[str, Any]  # the published settings, scaled to small images

    def init(self, ctx: SynthContext, unit: Unit, gen: torch.Generator) -> torch.Tensor: ...

    def stat_loss(self, ctx: SynthContext, observer: Observer, stats: list[Stats], unit: Unit,
                  state: dict) -> torch.Tensor: ...


def matched_gap(ctx: SynthContext, stats: list[Stats], target: Callable[[int], Stats]) -> torch.Tensor:
    """Σ over BN layers l of gap(stats_l, target(l)); the first layer counts `first_bn_weight` times as much
    as the others (SRe2L's multiplier)."""
    first = ctx.settings["first_bn_weight"]
    return sum((first if i == 0 else 1.0) * stat_gap(s, target(i)) for i, s in enumerate(stats))


def _views(x: torch.Tensor, s: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """Differentiable random views: a random roll (jitter), random-resized crops and flips, per image."""
    if s["jitter"]:
        dx, dy = (int(v) for v in torch.randint(-s["jitter"], s["jitter"] + 1, (2,), generator=gen))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    boxes = crop_boxes(len(x), tuple(s["crop_scale"]), (3 / 4, 4 / 3), gen)
    x = resize_crops(x, boxes, x.shape[-1])
    flips = (torch.rand(len(x), generator=gen) < s["flip"]).to(x.device)
    return torch.where(flips[:, None, None, None], x.flip(3), x)


def synthesize_unit(ctx: SynthContext, method: Method, unit: Unit) -> tuple[torch.Tensor, list[float]]:
    """Optimise one unit's images; returns them as uint8 and the statistics loss of every iteration."""
    s, spec, device = ctx.settings, ctx.spec, ctx.device
    gen = unit.generator()
    labels = unit.labels.to(device)
    x = method.init(ctx, unit, gen).to(device).requires_grad_(True)
    mean = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, -1, 1, 1)
    lo, hi = -mean / std, (1 - mean) / std  # the normalised values of pixels 0 and 1
    optimizer = torch.optim.Adam([x], lr=s["lr"], betas=(0.5, 0.9))
    state: dict = {}
    history = []
    with progress(f"unit {unit.index}", s["iterations"]) as task:
        for it in range(s["iterations"]):
            set_lr(optimizer, s["lr"] * lr_factor("cosine", it, s["iterations"]))
            observer = ctx.observers[it % len(ctx.observers)]
            views = _views(x, s, gen)
            with captured_stats(observer) as stats, autocast(device, s["amp"]):
                logits = observer.model(views).float()
            stat = method.stat_loss(ctx, observer, stats, unit, state)
            loss = F.cross_entropy(logits, labels) + s["r_bn"] * stat
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, hi), lo))
            history.append(stat.item())
            task.advance(1, f"BN gap {history[-1]:.3f}")
    return to_uint8(x.detach(), spec).cpu(), history


from dcond.synthesis import classwise, edc, sre2l  # noqa: E402,F401  (register the methods)
