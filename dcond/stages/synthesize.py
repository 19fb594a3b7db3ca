"""synthesize: recover condensed images from a teacher by matching its BatchNorm statistics
(methods in dcond/synthesis: sre2l, classwise, edc).

The images are made in independent units (all classes at once for SRe2L's mixed batches, one class
otherwise; `per_unit` images of each), each with its own seed, so the result does not depend on how the
units are scheduled, and an interrupted run resumes with the unfinished units.
"""

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from dcond.config import SynthConfig
from dcond.data import DataOptions, DatasetSpec, load_all
from dcond.data.sources import load_for_teacher
from dcond.data.folder import open_condensed
from dcond.data.images import class_indices
from dcond.engine import place, resolve_device
from dcond.errors import DcondError
from dcond.models import load_teachers
from dcond.stages.condensed import write_condensed
from dcond import recipes
from dcond.synthesis import SYNTHESIZERS
from dcond.synthesis.matching import Method, Observer, SynthContext, synthesize_unit
from dcond.units import class_generator, plan_units


def resolve_settings(cfg: SynthConfig, method: Method, spec: DatasetSpec) -> dict[str, Any]:
    """The config with the recipe's values filled in where no flag was given; the recipe is the one for data of
    this shape unless --recipe names another."""
    s = recipes.fill(cfg.recipe, spec, method.recipes, asdict(cfg))
    per_unit, classes_per_unit = unit_shape(method.batching, s["batch"], cfg.per_unit, cfg.ipc, spec.num_classes)
    jitter = cfg.jitter if cfg.jitter is not None else round(s["jitter_fraction"] * spec.image_size)
    return s | {"jitter": jitter, "per_unit": per_unit, "classes_per_unit": classes_per_unit}


def unit_shape(batching: str, batch: int | None, per_unit: int | None, ipc: int, num_classes: int) -> tuple[int, int]:
    """(images of each class, classes) of a unit: a batch of the recipe's size (None: a class's whole IPC), made
    as the method makes its batches: `mixed` (every class, an equal share of the batch each), `per-class` (one
    class), or `class-major` (the images in class order, so a batch larger than IPC spans several classes)."""
    batch = batch or ipc * (num_classes if batching == "mixed" else 1)
    if batching == "mixed":
        return min(ipc, per_unit or max(1, -(-batch // num_classes))), num_classes
    per_unit = min(ipc, per_unit or batch)
    return per_unit, max(1, batch // per_unit) if batching == "class-major" else 1


def synthesize(teacher: Path, data: DataOptions, cfg: SynthConfig, out: Path | None = None,
               force: bool = False) -> Path:
    teacher_arts, models = load_teachers([teacher, *cfg.teachers])
    spec = teacher_arts[0].dataset
    method = SYNTHESIZERS.get(cfg.method)()
    device = resolve_device(cfg.device)
    observers = []
    for art, model in zip(teacher_arts, models):
        if method.needs_bn and not art.section.get("bn_layers"):
            raise DcondError(f"--method {cfg.method} matches BatchNorm statistics, but teacher {art.path} has no "
                             "BatchNorm layers (train one with norm=batch)")
        if method.needs_class_stats and not art.section.get("stats"):
            raise DcondError(f"--method {cfg.method} needs the statistics of real data that teacher {art.path} "
                             "does not hold (a teacher made by dcond before 0.2 holds fewer): import its weights "
                             "again with `dcond train-teacher --epochs 0 --weights TEACHER/model.safetensors`")
        observers.append(Observer.from_artifact(art, place(model, device).eval(), device))
    settings = resolve_settings(cfg, method, spec)
    if method.recipes[settings["recipe"]].get("init") == "rded" and cfg.init is None:
        raise DcondError(f"{cfg.method}'s {settings['recipe']} recipe starts from RDED's images: make them with "
                         "`dcond select TEACHER --method rded --ipc N` and pass that folder as --init")
    parents = [("teacher", a) for a in teacher_arts]
    init_images: dict[int, torch.Tensor] = {}
    if method.real_init:
        init_images, init_art = _real_images(cfg, data, spec)
        parents += [("init", init_art)] if init_art else []
    ctx = SynthContext(observers, spec, device, settings, init_images)
    units = plan_units(spec.num_classes, cfg.ipc, settings["per_unit"], cfg.seed, settings["classes_per_unit"])
    config = {"teachers": [a.digest for a in teacher_arts], "data": asdict(data), **settings}
    return write_condensed(
        "synthesize", spec, units, lambda unit: synthesize_unit(ctx, method, unit)[0], config=config,
        parents=parents, teachers=teacher_arts, models=models, relabel_epochs=cfg.relabel_epochs, out=out,
        force=force, title=f"{cfg.ipc} images per class of {spec.name} synthesized by {cfg.method}",
        summary=f"Optimised for {settings['iterations']} iterations ({settings['recipe']} recipe) to match the "
                "statistics of real data in the teacher; see preview.png.")


def _real_images(cfg: SynthConfig, data: DataOptions, spec: DatasetSpec):
    """IPC real images per class to start from: the --init artifact's, or random ones from the data."""
    if cfg.init is not None:
        art, images = open_condensed(cfg.init, spec)
        per_class = {c: images.images[images.labels == c] for c in range(spec.num_classes)}
    else:
        art = None
        _, _, train = load_for_teacher(data, spec)
        per_class = {}
        for c, idx in enumerate(class_indices(train.labels, spec.num_classes)):
            perm = torch.randperm(len(idx), generator=class_generator(cfg.seed, c))
            per_class[c] = load_all(train.take(idx[perm[: cfg.ipc]])).images
    short = [spec.classes[c] for c, imgs in per_class.items() if len(imgs) < cfg.ipc]
    if short:
        raise DcondError(f"fewer than --ipc {cfg.ipc} images to start from for class(es) {', '.join(short)}")
    return per_class, art
