"""Per-class BatchNorm statistics: the mean and variance of every BN layer's input, per class of real data.

Class-wise synthesis ("Are Large-scale Soft Labels Necessary…") and EDC's category-aware matching compare
synthetic images with these instead of (or besides) the layer's running statistics.
"""

import torch
from torch import nn

from dcond.data import DatasetSpec, ImageDataset, batches, to_input
from dcond.log import progress
from dcond.models import bn_layers


@torch.no_grad()
def class_bn_statistics(model: nn.Module, dataset: ImageDataset, spec: DatasetSpec, device: torch.device,
                        batch_size: int = 500) -> dict[str, torch.Tensor]:
    """{"<layer>.mean": K×C, "<layer>.var": K×C} for every BN layer, and "count": images per class (K)."""
    model.eval()
    layers = bn_layers(model)
    k = spec.num_classes
    sums: dict[str, list[torch.Tensor]] = {}
    labels_now: list[torch.Tensor] = []

    def hook(name: str):
        def accumulate(module: nn.Module, inputs: tuple[torch.Tensor]) -> None:
            x = inputs[0].double()
            spatial = tuple(range(2, x.ndim))  # per-image means over positions (none for N×C input)
            per_sample = x.mean(spatial) if spatial else x
            per_sample_sq = (x * x).mean(spatial) if spatial else x * x
            if name not in sums:
                sums[name] = [torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device) for _ in range(2)]
            sums[name][0].index_add_(0, labels_now[0], per_sample)
            sums[name][1].index_add_(0, labels_now[0], per_sample_sq)
        return accumulate

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in layers]
    counts = torch.zeros(k, dtype=torch.float64, device=device)
    try:
        with progress("class-wise BN statistics", len(dataset)) as task:
            for images, labels in batches(dataset, batch_size):
                labels_now[:] = [labels.to(device)]
                model(to_input(images.to(device), spec))
                counts.index_add_(0, labels_now[0], torch.ones(len(labels), dtype=torch.float64, device=device))
                task.advance(len(labels))
    finally:
        for h in handles:
            h.remove()
    stats = {"count": counts.float().cpu()}
    denom = counts.clamp_min(1)[:, None]
    for name, (s1, s2) in sums.items():
        mean = s1 / denom
        stats[f"{name}.mean"] = mean.float().cpu()
        stats[f"{name}.var"] = (s2 / denom - mean * mean).clamp_min(0).float().cpu()
    return stats
