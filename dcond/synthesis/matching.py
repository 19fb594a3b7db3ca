"""Synthesis by statistic matching: optimise images so that a teacher's layers see the statistics of real
data (SRe2L and its successors).

The loop is shared: each iteration renders one random view of the whole batch (roll, random-resized crop,
flip: drawn once and shared by the batch, as the authors' code does), runs one observer network (several are
cycled, one per iteration), and minimises cross-entropy to the target classes plus `r_bn` times a statistics
gap. A method (one module, registered in SYNTHESIZERS) says how units group the classes, how images start,
which layers' statistics are compared with what, and, per recipe, the settings its authors' code uses for
data of that shape (`recipe_for`).
"""

from collections.abc import Callable
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
from dcond.realstats import KEYS, Stats, batch_stats, is_conv, layer_inputs, patch_size, stat_layers
from dcond.units import Unit
from dcond.validate import Fields, tensor


@dataclass
class Observer:
    """A teacher as synthesis sees it: its BatchNorm and Conv2d layers, with the statistics of real data at
    their inputs (whole-set: BN running buffers, Conv2d from the artifact; per class: from the artifact)."""

    model: nn.Module
    layers: list[nn.Module]
    patch: int
    whole: list[Stats | None]  # per layer; None for BN layers (their running buffers) or when not stored
    classes: list[Stats] | None  # per layer, classes × … tensors; None when the teacher stores none

    @classmethod
    def from_artifact(cls, art: Artifact, model: nn.Module, device: torch.device) -> "Observer":
        named = stat_layers(model)
        layers, patch = [m for _, m in named], patch_size(art.dataset.image_size)
        section = Fields(art.section, f"{art.path / MANIFEST}: model")
        stats_file = section.str("stats", optional=True)
        if not stats_file:
            return cls(model, layers, patch, [None] * len(layers), None)
        t, where, k = art.tensors(stats_file), str(art.path / stats_file), art.dataset.num_classes
        tensor(t, "count", where, (k,), lo=0)
        whole, classes = [], []
        for name, m in named:
            keys = KEYS if is_conv(m) else KEYS[:2]
            width = m.in_channels if is_conv(m) else m.num_features
            shapes = [(width,), (width,)]
            if is_conv(m):
                locations = tuple(tensor(t, f"{name}.patch_mean", where).shape)
                shapes += [locations, locations]
            classes.append([tensor(t, f"{name}.class_{key}", where, (k, *shape), lo=0 if "var" in key else None)
                            .to(device) for key, shape in zip(keys, shapes)])
            whole.append([tensor(t, f"{name}.{key}", where, shape, lo=0 if "var" in key else None).to(device)
                          for key, shape in zip(keys, shapes)] if is_conv(m) else None)
        return cls(model, layers, patch, whole, classes)

    @property
    def bn(self) -> list[int]:
        """Positions of the BatchNorm layers among `layers`."""
        return [i for i, m in enumerate(self.layers) if not is_conv(m)]

    def global_target(self, i: int) -> Stats:
        m = self.layers[i]
        return self.whole[i] if is_conv(m) else [m.running_mean, m.running_var]

    def class_target(self, i: int, labels: torch.Tensor) -> Stats:
        """The statistics of the classes of `labels`, averaged as the batch mixes them."""
        return [t[labels].mean(0) for t in self.classes[i]]


def gap(a: Stats, b: Stats) -> torch.Tensor:
    """Σ_s ‖a_s − b_s‖₂ over the statistics (SRe2L's ‖Δμ‖₂ + ‖Δσ²‖₂; EDC adds the patch terms)."""
    return sum(torch.norm(x - y, 2) for x, y in zip(a, b))


@dataclass
class SynthContext:
    """What a method may use while making a unit's images."""

    observers: list[Observer]
    spec: DatasetSpec
    device: torch.device
    settings: dict[str, Any]  # the resolved stage config
    init_images: dict[int, torch.Tensor] = field(default_factory=dict)  # per class, uint8, for real-image init


class Method(Protocol):
    batching: str  # how a unit takes its classes: "mixed", "per-class" or "class-major" (see `unit_shape`)
    needs_bn: bool  # matches BatchNorm layers only (an observer without them is useless)
    needs_class_stats: bool
    real_init: bool  # starts from real images (SynthContext.init_images)
    recipes: dict[str, dict[str, Any]]  # RECIPES -> the settings the authors' code uses for such data

    def init(self, ctx: SynthContext, unit: Unit, gen: torch.Generator) -> torch.Tensor: ...

    def stat_loss(self, ctx: SynthContext, observer: Observer, inputs: list[torch.Tensor], unit: Unit,
                  state: dict) -> torch.Tensor: ...


def bn_gap(ctx: SynthContext, observer: Observer, inputs: list[torch.Tensor],
           target: Callable[[int], Stats]) -> torch.Tensor:
    """Σ over BN layers of the gap between the batch's channel statistics at the layer's input and
    target(layer); the first BN layer counts `first_bn_weight` times (SRe2L's multiplier)."""
    first = ctx.settings["first_bn_weight"]
    return sum((first if j == 0 else 1.0) * gap(batch_stats(inputs[i], False, observer.patch), target(i))
               for j, i in enumerate(observer.bn))


def _views(x: torch.Tensor, s: dict[str, Any], gen: torch.Generator) -> torch.Tensor:
    """One differentiable random view of the whole batch: a roll by 0 … jitter pixels each way (−jitter …
    jitter with the recipe's `signed_roll`), a random-resized crop and a flip, each drawn once for the batch."""
    if s["jitter"]:
        low = -s["jitter"] if s.get("signed_roll") else 0
        dx, dy = (int(v) for v in torch.randint(low, s["jitter"] + 1, (2,), generator=gen))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if s["crop_scale"] is not None:
        box = crop_boxes(1, tuple(s["crop_scale"]), (3 / 4, 4 / 3), gen)
        x = resize_crops(x, box.expand(len(x), 4), x.shape[-1])
    return x.flip(3) if float(torch.rand(1, generator=gen)) < s["flip"] else x


SHOW_EVERY = 50  # iterations between progress-line readings of the statistics gap


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
    history, shown = [], ""
    turn = unit.index * s["iterations"]  # the observers take turns as if one counter ran through the units in order
    with progress(f"unit {unit.index}", s["iterations"]) as task:
        for it in range(s["iterations"]):
            set_lr(optimizer, s["lr"] * lr_factor("cosine", it, s["iterations"]))
            observer = ctx.observers[(turn + it) % len(ctx.observers)]
            views = _views(x, s, gen)
            with layer_inputs(observer.layers) as inputs, autocast(device, s["amp"]):
                logits = observer.model(views).float()
            stat = method.stat_loss(ctx, observer, inputs, unit, state)
            loss = F.cross_entropy(logits, labels) + s["r_bn"] * stat
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, hi), lo))
            history.append(stat.detach())
            # the gap is read on the host only now and then: each read waits for the GPU to finish the iteration
            shown = f"BN gap {float(history[-1]):.3f}" if it % SHOW_EVERY == 0 or it == s["iterations"] - 1 else shown
            task.advance(1, shown)
    return to_uint8(x.detach(), spec).cpu(), torch.stack(history).tolist() if history else []
