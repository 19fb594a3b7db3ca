"""Augmentations applied to whole batches of tensors at once (no per-image PIL work)."""

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad-and-crop at a random offset, then flip half of the images left-right."""
    n, _, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad,) * 4)
        i, j = (torch.randint(0, 2 * pad + 1, (n,), generator=gen) for _ in range(2))
        rows = (i[:, None] + torch.arange(h))[:, :, None]
        cols = (j[:, None] + torch.arange(w))[:, None, :]
        x = padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)
