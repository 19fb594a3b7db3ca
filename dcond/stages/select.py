"""select: choose realistic condensed images from real data with a teacher (random, herding, RDED, SCORE).

Work is split into one unit per class, each with its own seed: a unit's images are written as soon as
it is done, so an interrupted run resumes with the classes still to do.
"""

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from dcond import recipes
from dcond.config import SelectConfig
from dcond.data import DataOptions, DatasetSpec
from dcond.data.sources import load_for_teacher
from dcond.data.images import class_indices, load_all
from dcond.engine import place, resolve_device
from dcond.errors import DcondError
from dcond.models import load_teachers
from dcond.selection import SELECTION_RECIPES, SELECTORS
from dcond.selection.context import SelectContext
from dcond.stages.condensed import write_condensed
from dcond.units import Unit, plan_units


def resolve_options(cfg: SelectConfig, spec: DatasetSpec) -> dict[str, Any]:
    """The config with the method's recipe filled in where no flag was given (factor 1 where none applies)."""
    own = SELECTION_RECIPES.get(cfg.method) if cfg.method in SELECTION_RECIPES else {}
    options = recipes.fill(cfg.recipe, spec, own, asdict(cfg))
    options["factor"] = options["factor"] or 1
    if options["candidates"] is not None and options["candidates"] < cfg.ipc * options["factor"] ** 2:
        raise DcondError("--candidates must be at least --ipc × --factor²")
    return options


def select(teacher: Path, data: DataOptions, cfg: SelectConfig, out: Path | None = None, force: bool = False) -> Path:
    teacher_arts, models = load_teachers([teacher, *cfg.teachers])
    spec = teacher_arts[0].dataset
    data, real_spec, train = load_for_teacher(data, spec)
    device = resolve_device(cfg.device)
    options = resolve_options(cfg, spec)
    ctx = SelectContext(place(models[0], device).eval(), spec, device, options)
    method = SELECTORS.get(cfg.method)
    members = class_indices(train.labels, spec.num_classes)
    for c, idx in enumerate(members):
        if len(idx) < cfg.ipc * options["factor"] ** 2:
            raise DcondError(f"class '{spec.classes[c]}' has {len(idx)} images; --ipc {cfg.ipc} needs more")

    def make(unit: Unit) -> torch.Tensor:
        gen = unit.generator()
        (c,) = unit.classes
        idx = members[c]
        if options["candidates"]:
            idx = idx[torch.randperm(len(idx), generator=gen)[: options["candidates"]]]
        pool = load_all(train.take(idx)).images
        return method(ctx, c, pool, cfg.ipc, gen)

    config = {"teacher": teacher_arts[0].digest, "data": asdict(data), **options}
    return write_condensed(
        "select", spec, plan_units(spec.num_classes, cfg.ipc, cfg.ipc, cfg.seed), make, config=config,
        parents=[("teacher", a) for a in teacher_arts], teachers=teacher_arts, models=models,
        relabel_epochs=cfg.relabel_epochs, out=out, force=force,
        title=f"{cfg.ipc} images per class of {spec.name} selected by {cfg.method}",
        summary=f"Real {real_spec.name} images chosen with `{cfg.method}` using a teacher; see preview.png.")
