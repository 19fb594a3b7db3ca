"""import-labels: a soft-label bank written by the SRe2L / FKD relabel scripts, as a dcond labels artifact.

Their layout is a folder `epoch_E/batch_B.tar`, each file a `torch.save`d list
[crop coordinates (B × 4: top, left, height, width, as fractions of the image), flip flags (B), mix index
(B: the partner's position in the batch; None without mixing), λ (None without mixing), CutMix box
([r1, c1, r2, c2]: rows r1…r2 and columns c1…c2 in pixels of the `--input-size` view; None for Mixup),
logits (B × K)]. A batch holds the images (in ImageFolder order) that torch's RandomSampler yields, seeded
with `--fkd-seed` and drawing one permutation per epoch. The files are read with
`torch.load(weights_only=True)`, with numpy scalars allowed (the scripts store the CutMix box as numpy
integers), so nothing in them can run code. The imported bank is dense; its views are stored.
"""

import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import RandomSampler

from dcond.artifact import ArtifactWriter
from dcond.bank import write_epoch
from dcond.config import ImportConfig
from dcond.data import DataOptions, DatasetSpec, open_source
from dcond.data.augment import Views
from dcond.data.folder import ArtifactImages, open_condensed
from dcond.distributed import world
from dcond.errors import DcondError
from dcond.log import progress
from dcond.stages.relabel import DTYPES, carry_images

# what a weights-only load may build besides tensors: numpy scalars and their dtypes (numpy 1 and 2 names)
NUMPY_SCALARS = [np._core.multiarray.scalar, (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
                 np.dtype, np.dtypes.Int64DType, np.dtypes.Int32DType, np.dtypes.Float64DType,
                 np.dtypes.Float32DType, np.dtypes.BoolDType]


def import_labels(bank_dir: Path, images: Path, cfg: ImportConfig, out: Path | None = None,
                  force: bool = False) -> Path:
    spec = _spec(images, cfg.data)
    source, data = open_condensed(images, spec)
    epochs = _numbered(bank_dir, "epoch_")
    n, sampler = len(data), RandomSampler(range(len(data)), generator=torch.Generator().manual_seed(cfg.fkd_seed))
    config = {"bank": str(bank_dir), "images": str(images), **asdict(cfg)}
    with ArtifactWriter(out, "labels", spec, stage="import-labels", config=config, force=force,
                        parents=[("images", source)] if source else []) as w:
        carry_images(w, source, data)
        orders = [torch.tensor(list(sampler)) for _ in epochs]  # the sampler's state runs on from epoch to epoch
        mine = world().shard(list(enumerate(epochs)))  # under torchrun, each rank its every N-th epoch
        with progress("import epochs", len(mine)) as task:
            for e, folder in mine:
                views, logits = read_epoch(folder, orders[e], spec.num_classes, cfg.input_size)
                write_epoch(w, e, views, logits, DTYPES[cfg.dtype])
                task.advance(1)
        batch_size = world().share(views.batch_size if world().is_main else None)  # rank 0 read epoch 0
        w.section["bank"] = {"encoding": "dense", "epochs": len(epochs), "batch_size": batch_size,
                             "num_images": n, "num_classes": spec.num_classes, "temperature": cfg.temperature,
                             "views": None, "seed": None, "dtype": cfg.dtype, "teachers": [],
                             "imported": {"layout": "sre2l", "fkd_seed": cfg.fkd_seed, "input_size": cfg.input_size}}
        w.card |= {"title": f"Soft labels for {n} condensed {spec.name} images, imported from SRe2L / FKD",
                   "summary": f"A bank of {len(epochs)} epochs read from a SRe2L relabel folder.",
                   "usage": ["dcond compress-labels <this folder> --method prune+topk",
                             "dcond train-student <this folder> --model convnet"]}
    return w.out


def _spec(images: Path, data: str) -> DatasetSpec:
    if (images / "dcond.json").exists():
        return ArtifactImages(images).spec
    if not data:
        raise DcondError(f"{images} is an image folder: pass --data, the dataset its images condense")
    return open_source(DataOptions(data)).spec


def _numbered(folder: Path, prefix: str, suffix: str = "") -> list[Path]:
    """`prefix0suffix`, `prefix1suffix`, … in `folder`, which must run from 0 without gaps."""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+){re.escape(suffix)}")
    found = {int(m[1]): p for p in (folder.iterdir() if folder.is_dir() else []) if (m := pattern.fullmatch(p.name))}
    if not found or sorted(found) != list(range(len(found))):
        raise DcondError(f"{folder} does not hold {prefix}0{suffix}, {prefix}1{suffix}, … without gaps "
                         "(the SRe2L relabel layout)")
    return [found[i] for i in range(len(found))]


def read_epoch(folder: Path, order: torch.Tensor, num_classes: int, input_size: int) -> tuple[Views, torch.Tensor]:
    """One epoch's batches; `order` is the images in the order the epoch's batches show them."""
    parts, start = [], 0
    for path in _numbered(folder, "batch_", ".tar"):
        parts.append(read_batch(path, order[start:], num_classes, input_size))
        start += len(parts[-1][1])
    sizes = [len(logits) for _, logits in parts]
    if start != len(order) or any(s != sizes[0] for s in sizes[:-1]) or sizes[-1] > sizes[0]:
        raise DcondError(f"{folder} holds batches of {sizes} views; expected the {len(order)} images in batches of "
                         "one size (the last may be smaller)")
    return Views.concat([v for v, _ in parts]), torch.cat([logits for _, logits in parts])


def read_batch(path: Path, order: torch.Tensor, num_classes: int, input_size: int) -> tuple[Views, torch.Tensor]:
    """One batch file; its views show the first images of `order`."""
    with torch.serialization.safe_globals(NUMPY_SCALARS):
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unpickling failure: the file is not what the layout says
            raise DcondError(f"{path} is not a readable SRe2L batch file ({str(e).splitlines()[0]})") from None
    try:
        coords, flips, mix_index, lam, cut, logits = entry
        top, left, height, width = torch.as_tensor(coords, dtype=torch.float32).reshape(-1, 4).unbind(1)
        n = len(top)
        flips = torch.as_tensor(flips).reshape(n).to(torch.uint8)
        logits = torch.as_tensor(logits).reshape(n, num_classes).float()
        perm = torch.arange(n) if mix_index is None else torch.as_tensor(mix_index).reshape(n).long()
        lam = 1.0 if lam is None else float(lam)
        mix_box = torch.zeros(1, 4)
        if cut is not None:
            r1, c1, r2, c2 = (int(v) for v in cut)
            mix_box = torch.tensor([[c1, r1, c2, r2]], dtype=torch.float32) / input_size
            lam = 1 - float((mix_box[0, 2] - mix_box[0, 0]) * (mix_box[0, 3] - mix_box[0, 1]))
    except (TypeError, ValueError, RuntimeError) as e:
        raise DcondError(f"{path} does not hold a SRe2L batch of views of {num_classes} classes ({e})") from None
    boxes = torch.stack([left, top, left + width, top + height], 1)
    if n > len(order) or boxes.min() < 0 or boxes.max() > 1 + 1e-4 or mix_box.min() < 0 or mix_box.max() > 1 \
            or sorted(perm.tolist()) != list(range(n)):
        raise DcondError(f"{path}: more views than images, crop or CutMix boxes outside the image (is --input-size "
                         f"{input_size} right?), or a mix index that is not a permutation")
    return Views(order[:n], boxes.clamp(0, 1), flips, perm, torch.tensor([lam]), mix_box, n), logits
