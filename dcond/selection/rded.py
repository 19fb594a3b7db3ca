"""rded: realistic patches (RDED, "On the Diversity and Realism of Distilled Dataset", Sun et al. 2024).

Per class: from `candidates` random real images, cut `crops` random square crops each (random-resized, at
the patch size: the image size over `factor`), score each crop by the teacher's loss on the true class
with the crop in the middle of an otherwise mean-coloured (zero after normalisation) image of the input
size, keep each image's best crop, then the IPC × factor² lowest-loss crops overall, and tile them
factor × factor into images, crop of rank k·IPC + j in cell k of image j (factor 1 keeps whole crops).
"""

import torch
import torch.nn.functional as F

from dcond.data.augment import crop_boxes, resize_crops
from dcond.errors import DcondError
from dcond.selection import SELECTION_RECIPES, SELECTORS
from dcond.selection.context import SelectContext

# LINs-lab/RDED 3f6453d (docs/official/rded.md): every released script takes 300 candidates per class and 5 crops
# of torchvision's default scale, square; the CIFAR and Tiny-ImageNet scripts keep whole crops (factor 1),
# the ImageNet ones tile 2 × 2.
SMALL = {"candidates": 300, "crops": 5, "crop_scale": (0.08, 1.0), "factor": 1}
SELECTION_RECIPES.register("rded")({"cifar10": SMALL, "cifar100": SMALL, "tiny-imagenet": SMALL,
                                    "imagenet": SMALL | {"factor": 2}})


@SELECTORS.register("rded")
def select_rded(ctx: SelectContext, c: int, pool: torch.Tensor, ipc: int, gen: torch.Generator) -> torch.Tensor:
    factor, crops, scale = ctx.options["factor"], ctx.options["crops"], tuple(ctx.options["crop_scale"])
    size = ctx.spec.image_size
    patch = size // factor
    patches_needed = ipc * factor * factor
    if patches_needed > len(pool):
        raise DcondError(f"rded needs {patches_needed} candidate images of class {c}, but has {len(pool)}")
    pixels = pool.float()
    boxes = crop_boxes(len(pool) * crops, scale, (1.0, 1.0), gen).view(len(pool), crops, 4)
    views = torch.stack([resize_crops(pixels, boxes[:, k], patch, sampling_ratio=-1) for k in range(crops)], 1)
    views = views.round().clamp(0, 255).to(torch.uint8)  # candidates × crops × C × patch × patch
    losses = torch.stack([_loss(ctx, views[:, k], c, size) for k in range(crops)], 1)
    best_loss, best_crop = losses.min(1)
    keep = best_loss.argsort()[:patches_needed]  # each image contributes at most its best crop
    return _stitch(views[keep, best_crop[keep]], ipc, factor, size)


def _loss(ctx: SelectContext, crops: torch.Tensor, c: int, size: int) -> torch.Tensor:
    """The teacher's cross-entropy on class c of each crop, centred on a zero (mean-coloured) input."""
    x = ctx.inputs(crops)
    short = size - x.shape[-1]
    x = F.pad(x, (short // 2, short - short // 2) * 2)
    logits, _ = ctx.logits_and_features(x)
    return F.cross_entropy(logits.cpu(), torch.full((len(crops),), c), reduction="none")


def _stitch(patches: torch.Tensor, ipc: int, factor: int, size: int) -> torch.Tensor:
    """Tile the patches (in rank order) factor × factor: cell k of image j gets patch k·ipc + j, so every image
    holds one of the best IPC patches, one of the next IPC, and so on."""
    ch, p = patches.shape[1], patches.shape[-1]
    grid = patches.view(factor, factor, ipc, ch, p, p).permute(2, 3, 0, 4, 1, 5).reshape(ipc, ch, factor * p,
                                                                                        factor * p)
    if factor * p == size:
        return grid
    return F.interpolate(grid.float(), size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).round().clamp(0, 255).to(torch.uint8)
