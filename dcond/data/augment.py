"""Augmentations applied to whole batches of tensors at once (no per-image PIL work).

The relabel/replay views (random-resized crop, flip, CutMix or Mixup) are split in two: `draw_epoch`
draws the parameters of every view of an epoch from a seed, and `apply_views` renders a batch from its
parameters. A soft-label bank stores the parameters, so the student sees exactly the views the teacher
labelled; the parameters can also be drawn again from the seed.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dcond.config import ViewConfig
from dcond.data.images import InputImages
from dcond.engine import on_device
from dcond.errors import DcondError
from dcond.seeds import stream_seed
from dcond.validate import tensor


def random_shift(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad with `pad` rows and columns of zeros (black, on uint8 images) and crop back to the original size at a
    random offset, each image its own: torchvision's RandomCrop(size, padding=pad)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4)
    i, j = (torch.randint(0, 2 * pad + 1, (n,), generator=gen) for _ in range(2))
    rows = (i[:, None] + torch.arange(h))[:, :, None]
    cols = (j[:, None] + torch.arange(w))[:, None, :]
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def shuffle_strips(x: torch.Tensor, strips: int, gen: torch.Generator) -> torch.Tensor:
    """RDED's ShufflePatches: each image's `strips` column strips in a random order of its own, then its row
    strips likewise (at 2: a random swap of the left and right halves, then of the top and bottom ones). The
    last strip keeps the pixels that do not divide evenly."""
    def shuffled(img: torch.Tensor, dim: int) -> torch.Tensor:
        size = img.shape[dim] // strips
        pieces = img.split([size] * (strips - 1) + [img.shape[dim] - size * (strips - 1)], dim)
        return torch.cat([pieces[i] for i in torch.randperm(strips, generator=gen)], dim)

    return torch.stack([shuffled(shuffled(img, 2), 1) for img in x])


def random_crop_flip(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Pad-and-crop at a random offset, then flip half of the images left-right."""
    x = random_shift(x, pad, gen) if pad > 0 else x
    flip = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


@dataclass
class Views:
    """The views of one epoch, flat over its batches: batch b is rows b·B … (b+1)·B of the per-view tensors.

    order:    (N,)   which image each view shows
    boxes:    (N, 4) crop box x1, y1, x2, y2 as fractions of the image side
    flips:    (N,)   uint8, 1 = flipped left-right
    mix_perm: (N,)   position, within its batch, of the view mixed into this one
    mix_lam:  (nb,)  share of each batch's own views after mixing (1 = not mixed)
    mix_box:  (nb, 4) the CutMix box (fractions), all zero when not CutMix
    """

    order: torch.Tensor
    boxes: torch.Tensor
    flips: torch.Tensor
    mix_perm: torch.Tensor
    mix_lam: torch.Tensor
    mix_box: torch.Tensor
    batch_size: int

    def __len__(self) -> int:
        return len(self.mix_lam)

    def batch(self, b: int) -> "Views":
        return self.take(b, slice(b * self.batch_size, (b + 1) * self.batch_size))

    def take(self, b: int, rows: slice) -> "Views":
        """Batch `b`, whose views are rows `rows` (batches of several sizes lie end to end)."""
        return Views(self.order[rows], self.boxes[rows], self.flips[rows], self.mix_perm[rows],
                     self.mix_lam[b: b + 1], self.mix_box[b: b + 1], self.batch_size)

    @classmethod
    def concat(cls, parts: list["Views"]) -> "Views":
        """Batches end to end, as one Views (the batch size of the first)."""
        fields = ("order", "boxes", "flips", "mix_perm", "mix_lam", "mix_box")
        return cls(*(torch.cat([getattr(v, f) for v in parts]) for f in fields), parts[0].batch_size)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Compact dtypes for storage (indices as int32)."""
        return {"order": self.order.int(), "boxes": self.boxes.float(), "flips": self.flips.to(torch.uint8),
                "mix_perm": self.mix_perm.int(), "mix_lam": self.mix_lam.float(), "mix_box": self.mix_box.float()}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], batch_size: int, where: str = "views") -> "Views":
        """Views read from a file, each tensor checked for its shape and range (so a damaged file cannot index
        another image, crop outside one or mix beyond its batch)."""
        order = tensor(t, "order", where, integer=True)
        n, nb = len(order), len(tensor(t, "mix_lam", where))  # batches of several sizes may lie end to end
        if not -(-n // batch_size) <= nb <= n:
            raise DcondError(f"{where}: {nb} batches cannot hold {n} views in batches of at most {batch_size}")

        def fractions(key: str, shape: tuple[int, ...]) -> torch.Tensor:  # boxes, flags and shares lie in [0, 1]
            return tensor(t, key, where, shape, lo=0, hi=1)

        return cls(order.long(), fractions("boxes", (n, 4)).float(), fractions("flips", (n,)).to(torch.uint8),
                   tensor(t, "mix_perm", where, (n,), lo=0, hi=batch_size - 1, integer=True).long(),
                   fractions("mix_lam", (nb,)).float(), fractions("mix_box", (nb, 4)).float(), batch_size)

    def check_images(self, num_images: int, where: str) -> None:
        """Every view shows one of the `num_images` images."""
        if len(self.order) and (int(self.order.min()) < 0 or int(self.order.max()) >= num_images):
            raise DcondError(f"{where}: tensor 'order' holds image indices outside 0 … {num_images - 1} "
                             f"(min {int(self.order.min())}, max {int(self.order.max())})")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Each epoch's views come from their own seed, so any epoch can be drawn again on its own."""
    return torch.Generator().manual_seed(stream_seed(seed, epoch))


def draw_epoch(num_images: int, batch_size: int, cfg: ViewConfig, image_size: int, gen: torch.Generator) -> Views:
    """The views of one epoch: a shuffled pass over the images, in batches of `batch_size`."""
    n = num_images
    order = torch.randperm(n, generator=gen)
    boxes = crop_boxes(n, cfg.crop_scale, cfg.crop_ratio, gen)
    flips = (torch.rand(n, generator=gen) < cfg.flip).to(torch.uint8)
    nb = -(-n // batch_size)
    mix_perm = torch.arange(n) % batch_size  # unmixed batches: each view its own partner, by position in the batch
    mix_lam, mix_box = torch.ones(nb), torch.zeros(nb, 4)
    for b in range(nb):
        size = min(batch_size, n - b * batch_size)
        perm = torch.randperm(size, generator=gen)
        lam = _beta(cfg.mix_alpha, gen)
        if cfg.mix == "none" or float(torch.rand(1, generator=gen)) >= cfg.mix_prob:
            continue
        mix_perm[b * batch_size: b * batch_size + size] = perm
        if cfg.mix == "cutmix":
            mix_box[b] = _cutmix_box(lam, image_size, gen)
            mix_lam[b] = 1 - float((mix_box[b, 2] - mix_box[b, 0]) * (mix_box[b, 3] - mix_box[b, 1]))
        else:
            mix_lam[b] = lam
    return Views(order, boxes, flips, mix_perm, mix_lam, mix_box, batch_size)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """λ ~ Beta(α, α), seeded from `gen` (torch's Beta sampler takes no generator)."""
    return float(np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen))).beta(alpha, alpha))


def crop_boxes(n: int, scale: tuple[float, float], ratio: tuple[float, float], gen: torch.Generator,
               attempts: int = 10) -> torch.Tensor:
    """Random-resized-crop boxes (x1, y1, x2, y2 as fractions) as torchvision draws them: the first of several
    tries that fits, else the whole image."""
    area = torch.empty(n, attempts).uniform_(*scale, generator=gen)
    log_ratio = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    w, h = (area * log_ratio.exp()).sqrt(), (area / log_ratio.exp()).sqrt()
    fits = (w <= 1) & (h <= 1)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    pick = first.clamp_min(0)[:, None]
    w = torch.where(first >= 0, w.gather(1, pick)[:, 0], torch.ones(n))
    h = torch.where(first >= 0, h.gather(1, pick)[:, 0], torch.ones(n))
    x1 = torch.rand(n, generator=gen) * (1 - w)
    y1 = torch.rand(n, generator=gen) * (1 - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], 1)


def _cutmix_box(lam: float, size: int, gen: torch.Generator) -> torch.Tensor:
    """A box of about (1 - λ) of the image, on the pixel grid, so that its true area gives the mixing weight."""
    cut = math.sqrt(1 - lam)
    cx, cy = torch.rand(2, generator=gen).tolist()
    box = torch.tensor([cx - cut / 2, cy - cut / 2, cx + cut / 2, cy + cut / 2]).clamp(0, 1)
    return (box * size).round() / size


def resize_crops(images: torch.Tensor, boxes: torch.Tensor, size: int, sampling_ratio: int = 1) -> torch.Tensor:
    """Crop box i (fractions) out of float image i and resize it to size×size, all in one batched call.
    One bilinear sample at each output pixel's centre is exact for crops no larger than the output; pass
    sampling_ratio=-1 to average over each output pixel's footprint when shrinking."""
    b = on_device(boxes, images.device).to(images.dtype)
    if sampling_ratio == 1:  # torch's own sampler: keeps torchvision (2 s of imports) off relabel and the students
        return F.grid_sample(images, _sampling_grid(b, size), mode="bilinear", padding_mode="border",
                             align_corners=False)
    from torchvision.ops import roi_align

    n, _, h, w = images.shape
    # pixel coordinates by Python scalars: a tensor of scales made on the GPU would wait for the GPU to be idle
    rois = torch.stack([torch.arange(n, dtype=images.dtype, device=images.device),
                        b[:, 0] * w, b[:, 1] * h, b[:, 2] * w, b[:, 3] * h], 1)
    return roi_align(images, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=sampling_ratio,
                     aligned=True)


def _sampling_grid(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """grid_sample's grid (x, y in −1 … 1) for the centres of size×size cells laid over each box: the points
    torchvision's roi_align(aligned=True, sampling_ratio=1) samples, clamped to the border as it does."""
    centres = (torch.arange(size, dtype=boxes.dtype, device=boxes.device) + 0.5) / size
    xs = boxes[:, 0:1] + centres * (boxes[:, 2:3] - boxes[:, 0:1])
    ys = boxes[:, 1:2] + centres * (boxes[:, 3:4] - boxes[:, 1:2])
    n = len(boxes)
    grid = torch.stack([xs[:, None, :].expand(n, size, size), ys[:, :, None].expand(n, size, size)], -1)
    return grid * 2 - 1


def apply_views(images: torch.Tensor | InputImages, views: Views) -> torch.Tensor:
    """Render one batch of views from network-input images (N×C×H×W, indexed by `views.order`: float, or uint8
    made float row by row), on their device.
    The per-batch CutMix box and λ are read on the host, where they live; nothing waits for the GPU."""
    device = images.device
    x = images[on_device(views.order, device)]
    h, w = x.shape[-2:]
    x = resize_crops(x, views.boxes, h)
    x = torch.where(on_device(views.flips, device).bool()[:, None, None, None], x.flip(3), x)
    lam = float(views.mix_lam[0])
    if lam < 1:
        partner = x[on_device(views.mix_perm, device)]
        box = views.mix_box[0]
        if box.any():  # CutMix: paste the partner's box
            x1, y1, x2, y2 = (box * torch.tensor([w, h, w, h])).round().long().tolist()
            x = x.clone()
            x[:, :, y1:y2, x1:x2] = partner[:, :, y1:y2, x1:x2]
        else:  # Mixup
            x = lam * x + (1 - lam) * partner
    return x


def mixed_targets(labels: torch.Tensor, views: Views, num_classes: int) -> torch.Tensor:
    """Hard labels of a rendered batch as distributions, mixed by λ like the images, on the labels' device."""
    own = F.one_hot(labels[on_device(views.order, labels.device)], num_classes).float()
    lam = float(views.mix_lam[0])
    return own if lam >= 1 else lam * own + (1 - lam) * own[on_device(views.mix_perm, labels.device)]
