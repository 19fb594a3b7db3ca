"""rded: realistic patches (RDED, "On the Diversity and Realism of Distilled Dataset", Sun et al. 2024).

Per class: cut several random square crops from each candidate image, score each crop by the teacher's
loss on the true class, keep each image's best crop, then the IPC × factor² most confident crops overall,
and stitch factor × factor of them into one image (factor 1 keeps whole crops).
"""

import torch
import torch.nn.functional as F

from dcond.data.augment import crop_boxes, resize_crops
from dcond.errors import DcondError
from dcond.selection import SELECTORS, SelectContext


@SELECTORS.register("rded")
def select_rded(ctx: SelectContext, c: int, pool: torch.Tensor, ipc: int, gen: torch.Generator) -> torch.Tensor:
    factor, crops, scale = ctx.options["factor"], ctx.options["crops"], tuple(ctx.options["crop_scale"])
    size = ctx.spec.image_size
    patches_needed = ipc * factor * factor
    if patches_needed > len(pool):
        raise DcondError(f"rded needs {patches_needed} candidate images of class {c}, but has {len(pool)}")
    pixels = pool.float()
    boxes = crop_boxes(len(pool) * crops, scale, (1.0, 1.0), gen).view(len(pool), crops, 4)
    losses = torch.empty(len(pool), crops)
    for k in range(crops):  # score every candidate's k-th crop, rendered at the network's input size
        views = resize_crops(pixels, boxes[:, k], size).round().to(torch.uint8)
        logits, _ = ctx.logits_and_features(ctx.inputs(views))
        losses[:, k] = F.cross_entropy(logits.cpu(), torch.full((len(pool),), c), reduction="none")
    best_loss, best_crop = losses.min(1)
    keep = best_loss.argsort()[:patches_needed]  # each image contributes at most its best crop
    patch_size = size // factor
    patches = resize_crops(pixels[keep], boxes[keep, best_crop[keep]], patch_size, sampling_ratio=-1)
    return _stitch(patches, ipc, factor, size).round().clamp(0, 255).to(torch.uint8)


def _stitch(patches: torch.Tensor, ipc: int, factor: int, size: int) -> torch.Tensor:
    """Tile consecutive groups of factor² patches into factor × factor mosaics of size×size."""
    n, ch, p, _ = patches.shape
    grid = patches.view(ipc, factor, factor, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(ipc, ch, factor * p,
                                                                                        factor * p)
    return grid if factor * p == size else F.interpolate(grid, size=(size, size), mode="bilinear",
                                                         align_corners=False, antialias=True)
