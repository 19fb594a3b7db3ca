"""relabel: the teacher's soft labels for every view a student will see (the relabel step of SRe2L / FKD).

For each epoch of the student's future training, draw its views (crop box, flip, CutMix/Mixup partner
and λ per batch) from the seed, run the teacher (or the mean of several teachers' logits) on exactly
those views, and store parameters and logits as one bank file per epoch.
"""

import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
import torch

from dcond.artifact import Artifact, ArtifactWriter, config_key, image_files, save_images
from dcond.bank import epoch_file, write_epoch
from dcond.config import LOGIT_DTYPES, RelabelConfig
from dcond.data import InputImages, TensorImages
from dcond.data.augment import Views, apply_views, draw_epoch, epoch_generator
from dcond.data.folder import open_condensed
from dcond.distributed import world
from dcond.engine import ensemble_logits, place, resolve_device, to_host
from dcond.errors import DcondError
from dcond.log import info, progress
from dcond.models import load_teachers

DTYPES = {name: getattr(torch, name) for name in LOGIT_DTYPES}


def default_batch_size(num_images: int) -> int:
    return min(num_images, 100, max(10, num_images // 4))


def relabel(images: Path, teachers: list[Path], cfg: RelabelConfig, out: Path | None = None,
            force: bool = False) -> Path:
    resolve_device(cfg.device)  # a device that cannot be had fails here, before anything is written
    teacher_arts, models = load_teachers(teachers)
    spec = teacher_arts[0].dataset
    source, data = open_condensed(images, spec)
    parents = ([("images", source)] if source else []) + [("teacher", t) for t in teacher_arts]
    config = {"images": str(images), "teachers": [t.digest for t in teacher_arts], **asdict(cfg)}
    with ArtifactWriter(out, "labels", spec, stage="relabel", config=config, parents=parents, force=force,
                        resume_key=config_key(config | {"source": source.digest if source else None})) as w:
        carry_images(w, source, data)
        write_bank(w, data, teacher_arts, models, cfg)
        w.card |= {"title": f"Soft labels for {len(data)} condensed {spec.name} images",
                   "summary": f"{len(data)} images with a soft-label bank of {cfg.epochs} epochs of views "
                              f"labelled by {len(teacher_arts)} teacher(s).",
                   "usage": ["dcond train-student <this folder> --model convnet",
                             "dcond compress-labels <this folder> --method prune+topk"]}
    return w.out


def carry_images(w: ArtifactWriter, source: Artifact | None, data: TensorImages) -> None:
    """The labels artifact carries its images: hard links to the source artifact's files where the file
    system allows, copies otherwise; an ImageFolder's images are written anew at the teacher's size.
    Under torchrun rank 0 alone writes them (two ranks linking one file race each other)."""
    if not world().is_main:
        return
    if source is None:
        save_images(w, data.images, data.labels)
    else:
        link_images(w, source)


def link_images(w: ArtifactWriter, source: Artifact) -> None:
    """The images of an images or labels artifact, as hard links where the file system allows, else copies."""
    paths, _ = image_files(source)
    for src in paths:
        dst = w.path(src.relative_to(source.path).as_posix())
        if dst.exists():
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    w.section |= {k: source.section[k] for k in ("images_dir", "count", "per_class")}


def write_bank(w: ArtifactWriter, data: TensorImages, teacher_arts: list[Artifact], models: list[torch.nn.Module],
               cfg: RelabelConfig) -> None:
    """Label every view of every epoch and store the bank in `w`; epochs already on disk (a resumed run)
    are kept, and under torchrun each rank labels every N-th remaining epoch."""
    device = resolve_device(cfg.device)
    models = [place(m, device).eval() for m in models]
    spec = w.dataset
    images = InputImages(data.images.to(device), spec)  # made float batch by batch
    batch_size = cfg.batch_size or default_batch_size(len(data))
    # rank 0 decides what is left: ranks that start later must not see their peers' fresh epochs as done
    todo = world().share([e for e in range(cfg.epochs) if not (w.dir / epoch_file(e)).exists()])
    if len(todo) < cfg.epochs:
        info(f"resuming: {cfg.epochs - len(todo)} of {cfg.epochs} bank epochs already written")
    mine = world().shard(todo)
    t0, labelled, dtype = time.perf_counter(), 0, DTYPES[cfg.dtype]
    # a writer thread stores epoch e while the GPU labels epoch e + 1; one epoch waits at most, so memory is bounded
    with progress("relabel epochs", len(mine)) as task, ThreadPoolExecutor(max_workers=1) as writer:
        written = None
        for e in mine:
            views = draw_epoch(len(data), batch_size, cfg.views, spec.image_size, epoch_generator(cfg.seed, e))
            logits = torch.cat([ensemble_logits(models, apply_views(images, views.batch(b)), device, cfg.amp)
                                for b in range(len(views))])
            host, filled = to_host(logits.to(dtype))
            if written is not None:
                written.result()
            written = writer.submit(_write, w, e, views, host, filled)
            labelled += len(logits)
            task.advance(1, f"{labelled / (time.perf_counter() - t0):.0f} views/s")
        if written is not None:
            written.result()
    world().barrier()
    if any(not (w.dir / epoch_file(e)).exists() for e in range(cfg.epochs)):
        raise DcondError("some bank epochs were not written; run the command again to finish them")
    w.section["bank"] = {"encoding": "dense", "epochs": cfg.epochs, "batch_size": batch_size,
                         "num_images": len(data), "num_classes": spec.num_classes, "temperature": cfg.temperature,
                         "views": cfg.views.to_dict(), "seed": cfg.seed, "dtype": cfg.dtype,
                         "teachers": [t.digest for t in teacher_arts]}


def _write(w: ArtifactWriter, epoch: int, views: Views, logits: torch.Tensor, filled: Callable[[], None]) -> None:
    filled()
    write_epoch(w, epoch, views, logits, logits.dtype)
