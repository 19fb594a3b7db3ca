"""Statistics of images as a network sees them, at the input of every BatchNorm and Conv2d layer: what the
statistic-matching methods (SRe2L, class-wise, EDC) compare synthetic images with.

At each such layer: the channel mean and biased variance of its input; at a Conv2d input also the mean and
biased variance of each P×P patch location over (channels, P, P), EDC's patch statistics (P = 4 for images
of up to 64 pixels, 16 above, as in EDC's small-data and ImageNet code). Of real data a teacher artifact
stores, per class, the mean over the class's images of each image's own statistics (so a class's variance
is the mean of per-image spatial variances: EDC's class target, and what the class-wise method's running
per-class statistics approximate), and at Conv2d inputs the same statistics pooled over the whole training
set (BatchNorm layers keep theirs as running buffers).
"""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from dcond.data import DatasetSpec, ImageDataset, batches, to_input
from dcond.log import progress

STATS_FILE = "stats.safetensors"
BATCH_BYTES = 256 * 2**20  # the layer inputs one batch holds at once (a batch of 500 at 224 px would take GBs)
MAX_BATCH = 500
Stats = list[torch.Tensor]  # channel mean, channel variance[, patch mean, patch variance]


def stat_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The BatchNorm and Conv2d layers, in module order (the first is usually the first convolution, whose
    input is the image)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Conv2d))]


def is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d)


def patch_size(image_size: int) -> int:
    return 4 if image_size <= 64 else 16


@contextmanager
def layer_inputs(modules: list[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """The input of each module during the (single) forward pass inside the block, in float32, by position."""
    captured: list[torch.Tensor] = [torch.empty(0)] * len(modules)

    def hook(i: int):
        def store(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
            captured[i] = inputs[0].float()
        return store

    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def _patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """B×C×H×W -> B × locations × (C·P·P): the feature map resized up to a multiple of P, cut into P×P tiles."""
    b, c, h, w = x.shape
    nh, nw = math.ceil(h / p), math.ceil(w / p)
    if (h, w) != (nh * p, nw * p):
        x = F.interpolate(x, size=(nh * p, nw * p), mode="bilinear", align_corners=False)
    return x.view(b, c, nh, p, nw, p).permute(0, 2, 4, 1, 3, 5).reshape(b, nh * nw, c * p * p)


def batch_stats(x: torch.Tensor, conv: bool, p: int) -> Stats:
    """The statistics of a whole batch (pooled over its images)."""
    stats = [x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)]
    if conv:
        tiles = _patches(x, p).transpose(0, 1).flatten(1)  # locations × (B·C·P·P)
        stats += [tiles.mean(1), tiles.var(1, unbiased=False)]
    return stats


def image_stats(x: torch.Tensor, tiles: torch.Tensor | None) -> Stats:
    """Each image's own statistics, B×C (and, given its patches (`_patches`), B×locations)."""
    stats = [x.mean((2, 3)), x.var((2, 3), unbiased=False)]
    if tiles is not None:
        stats += [tiles.mean(2), tiles.var(2, unbiased=False)]
    return stats


KEYS = ("mean", "var", "patch_mean", "patch_var")


@torch.no_grad()
def real_statistics(model: nn.Module, dataset: ImageDataset, spec: DatasetSpec, device: torch.device,
                    augment: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> dict[str, torch.Tensor]:
    """One pass over `dataset` (uint8 images through `augment`, as the teacher saw them in training):
    "<layer>.class_<stat>" (classes × …) at every BN and Conv2d input, "<layer>.<stat>" (the whole set) at
    every Conv2d input, for <stat> in mean, var (and at Conv2d inputs patch_mean, patch_var); "count".
    Batches are as large as fit BATCH_BYTES of layer inputs, so memory does not depend on the image size."""
    model.eval()
    named = stat_layers(model)
    batch_size = _batch_size(model, [m for _, m in named], dataset, spec, device)
    p, k = patch_size(spec.image_size), spec.num_classes
    class_sums: dict[str, torch.Tensor] = {}
    pooled: dict[str, list[torch.Tensor]] = {}  # Conv2d inputs: Σx, Σx² per channel, then per patch location
    counts = torch.zeros(k, dtype=torch.float64, device=device)
    with progress("statistics of real data", len(dataset)) as task, \
            layer_inputs([m for _, m in named]) as inputs:
        for images, labels in batches(dataset, batch_size):
            labels = labels.to(device)
            model(to_input(augment(images).to(device), spec))
            counts.index_add_(0, labels, torch.ones(len(labels), dtype=torch.float64, device=device))
            # per image in float32 (a float64 copy of a batch's feature maps takes GBs at 64 px and more), summed
            # over images and batches in float64
            for (name, module), x in zip(named, inputs):
                tiles = _patches(x, p) if is_conv(module) else None  # cut once, for both sums
                for key, value in zip(KEYS, image_stats(x, tiles)):
                    total = class_sums.setdefault(f"{name}.class_{key}",
                                                  torch.zeros(k, value.shape[1], dtype=torch.float64, device=device))
                    total.index_add_(0, labels, value.double())
                if tiles is not None:
                    _pool(pooled, name, x, tiles)
            task.advance(len(labels))
    stats = {key: (total / counts.clamp_min(1)[:, None]).float().cpu() for key, total in class_sums.items()}
    for name, (s1, s2, n, t1, t2, m) in pooled.items():
        stats |= {f"{name}.mean": s1 / n, f"{name}.var": (s2 / n - (s1 / n) ** 2).clamp_min(0),
                  f"{name}.patch_mean": t1 / m, f"{name}.patch_var": (t2 / m - (t1 / m) ** 2).clamp_min(0)}
    return {key: v.float().cpu() for key, v in stats.items()} | {"count": counts.float().cpu()}


def _batch_size(model: nn.Module, modules: list[nn.Module], dataset: ImageDataset, spec: DatasetSpec,
                device: torch.device) -> int:
    """How many images' layer inputs (counted twice: patches are a copy) fit in BATCH_BYTES."""
    with layer_inputs(modules) as inputs:
        model(to_input(dataset.__getitems__([0])[0].to(device), spec))
        per_image = 2 * sum(x.numel() * x.element_size() for x in inputs)
    return max(1, min(MAX_BATCH, BATCH_BYTES // per_image))


def _pool(pooled: dict[str, list], name: str, x: torch.Tensor, tiles: torch.Tensor) -> None:
    """Add a batch (and its patches) to the running sums from which a Conv2d input's whole-set statistics are
    computed."""
    part = [x.sum((2, 3)).double().sum(0), x.square().sum((2, 3)).double().sum(0), x.shape[0] * x.shape[2] * x.shape[3],
            tiles.sum(2).double().sum(0), tiles.square().sum(2).double().sum(0), tiles.shape[0] * tiles.shape[2]]
    pooled[name] = part if name not in pooled else [a + b for a, b in zip(pooled[name], part)]
