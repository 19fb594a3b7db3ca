"""Labelled image sets as uint8 tensors, batched loading, and the uint8 <-> network-input conversion."""

import copy
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF
from torch.utils.data import BatchSampler, DataLoader, Dataset, get_worker_info

from dcond.spec import DatasetSpec
from dcond.config import available_cores
from dcond.distributed import world
from dcond.errors import DcondError

Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 images N×C×H×W, int64 labels N


class TensorImages(Dataset):
    """Images held in memory as one uint8 tensor N×C×H×W."""

    crop = 1.0  # as they are: a share of the centre is kept only when files are decoded (`FileImages`)

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("TensorImages wants uint8 N×C×H×W images and N labels")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Batch:
        return self.images[i], self.labels[i]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = torch.as_tensor(indices)
        return self.images[idx], self.labels[idx]

    def take(self, indices: torch.Tensor) -> "TensorImages":
        return TensorImages(self.images[indices], self.labels[indices])


class FileImages(Dataset):
    """Image files decoded on demand, centre-cropped to a square and resized to `size` (with `exact`, files that
    must already be `size` pixels square: the images inside an artifact). `crop`: the share of the square's side
    kept around its centre (`centre_cropped`). `files`: paths, or any sequence of files PIL opens (a Hugging Face
    dataset's encoded images, `dcond.data.hf`)."""

    def __init__(self, files: Sequence[Path | IO[bytes]], labels: torch.Tensor, channels: int, size: int,
                 exact: bool = False, crop: float = 1.0):
        self.files, self.labels, self.channels, self.size = files, labels.long(), channels, size
        self.exact, self.crop = exact, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Batch:
        return self._decode(i), self.labels[i]

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        decoders = _decoders()
        images = list(decoders.map(self._decode, indices)) if decoders and len(indices) > 1 else \
            [self._decode(i) for i in indices]
        return torch.stack(images), self.labels[torch.as_tensor(indices)]

    def _decode(self, i: int) -> torch.Tensor:
        return decode_image(self.files[i], self.channels, self.size, self.exact, self.crop)

    def take(self, indices: torch.Tensor) -> "FileImages":
        return FileImages([self.files[i] for i in indices.tolist()], self.labels[indices], self.channels, self.size,
                          self.exact, self.crop)

    def centre_cropped(self, crop: float) -> "FileImages":
        """The same images, of which only the central `crop` of each side is kept before resizing."""
        cropped = copy.copy(self)
        cropped.crop = crop
        return cropped


ImageDataset = TensorImages | FileImages


def decode_threads() -> int:
    """This process's share of the cores, at most 8: OMP_NUM_THREADS where it is set (torchrun sets 1 for each of
    several processes, `dcond run --jobs` a share each), else every core it may run on."""
    given = os.environ.get("OMP_NUM_THREADS", "").split(",")[0]
    return min(8, int(given) if given.isdigit() and int(given) > 0 else available_cores())


DECODE_THREADS = decode_threads()
_decoder_pools: dict[int, ThreadPoolExecutor] = {}  # by process: a forked child has the pool but not its threads


def _decoders() -> ThreadPoolExecutor | None:
    """Threads that decode one batch's files together: PIL lets go of the GIL while it decodes and resizes, so
    every decoding loop (evaluation, the teacher's statistics, selection) uses the cores without worker
    processes. None in a DataLoader worker, which is already one of several processes."""
    if DECODE_THREADS == 1 or get_worker_info() is not None:
        return None
    pid = os.getpid()
    if pid not in _decoder_pools:
        _decoder_pools.clear()
        _decoder_pools[pid] = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="dcond-decode")
    return _decoder_pools[pid]


def decode_image(file: Path | IO[bytes], channels: int, size: int, exact: bool = False,
                 crop: float = 1.0) -> torch.Tensor:
    """A uint8 C×H×W image: the file's image resized to `size / crop` on its shorter side, and its central
    `size`-pixel square (crop 0.875 at 224: Resize(256) -> CenterCrop(224)); a file whose header declares more pixels
    than PIL's bound (a decompression bomb) is refused before it is decoded."""
    try:
        with Image.open(file) as img:
            if exact and img.size != (size, size):
                raise DcondError(f"image {file} is {img.size[0]}×{img.size[1]} pixels; the artifact's images are "
                                 f"{size}×{size}")
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (size, size) or crop < 1:
                img = TF.center_crop(TF.resize(img, round(size / crop)), [size])
            pixels = np.asarray(img).reshape(size, size, channels)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # PIL's ways of saying "damaged"
        raise DcondError(f"cannot read image {file}: {e}") from None
    # numpy makes the channel-first copy: torch's may start OpenMP threads of its own in each decoding thread
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def load_all(dataset: ImageDataset) -> TensorImages:
    """The whole set in memory (small sets: condensed images, test subsets)."""
    if isinstance(dataset, TensorImages):
        return dataset
    return TensorImages(*dataset.__getitems__(range(len(dataset))))


def batches(dataset: ImageDataset, batch_size: int, shuffle: bool = False, seed: int = 0,
            drop_last: bool = False, workers: int = 0, shard: bool = False) -> DataLoader:
    """Batches of (uint8 images, labels), fetched a whole batch at a time. With `shard`, only this rank's
    share of the order: every N-th image, cut to equal lengths so that all ranks take the same steps."""
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    if shard:
        w = world()
        order = order[w.rank:: w.size][: n // w.size]
    return DataLoader(dataset, batch_sampler=BatchSampler(order.tolist(), batch_size, drop_last),
                      collate_fn=_whole_batch, num_workers=workers, persistent_workers=workers > 0)


def _whole_batch(batch: Batch) -> Batch:
    return batch


def balanced_subset(dataset: ImageDataset, n: int, num_classes: int) -> ImageDataset:
    """The first images of each class, n in all, as evenly spread over the classes as n allows."""
    if n >= len(dataset):
        return dataset
    picks = []
    for c in range(num_classes):
        members = (dataset.labels == c).nonzero().flatten()
        picks.append(members[: n // num_classes + (c < n % num_classes)])
    return dataset.take(torch.cat(picks).sort().values)


def held_out(labels: torch.Tensor, num_classes: int, fraction: float, seed: int) -> set[int]:
    """Indices of a class-balanced random `fraction` of the images (at least one per class when the fraction
    is not 0, and never a class's last image), drawn with `seed`."""
    if fraction == 0:
        return set()
    held = set()
    for c, members in enumerate(class_indices(labels, num_classes)):
        n = min(len(members) - 1, max(1, round(fraction * len(members))))
        order = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed + c))
        held |= set(members[order[:n]].tolist())
    return held


def class_indices(labels: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """Per class, the ascending indices of its images: one stable sort, not a pass over the labels per class
    (1,000 of them on ImageNet)."""
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    return list(labels.argsort(stable=True).split(counts))[:num_classes]


def _normaliser(spec: DatasetSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel mean and std of `spec`, as 1×C×1×1 tensors on `device`."""
    return (torch.tensor(spec.mean, device=device).view(1, -1, 1, 1),
            torch.tensor(spec.std, device=device).view(1, -1, 1, 1))


def _normalised(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - mean) / std


def to_input(images: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """uint8 images -> normalised float network input, on the images' device."""
    return _normalised(images, *_normaliser(spec, images.device))


class InputImages:
    """uint8 images on a device that hand out network input (float, normalised) for the rows indexed: the set
    takes a quarter of the memory of its float32 form, and the rows equal those of `to_input` of the whole set
    bit for bit (the normalisation is elementwise). The mean and std are put on the device once, not per batch
    (a copy to a GPU per batch would make the host wait)."""

    def __init__(self, images: torch.Tensor, spec: DatasetSpec):
        self.images = images
        self.mean, self.std = _normaliser(spec, images.device)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def shape(self) -> torch.Size:
        return self.images.shape

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> torch.Tensor:
        return _normalised(self.images[index], self.mean, self.std)


def to_uint8(inputs: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    """Normalised float network input -> uint8 images (the inverse of `to_input`, rounded and clipped)."""
    mean, std = _normaliser(spec, inputs.device)
    return ((inputs * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
