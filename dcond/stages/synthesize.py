"""synthesize: recover condensed images from a teacher by matching its BatchNorm statistics
(methods in dcond/synthesis: sre2l, classwise, edc).

The images are made in independent units (all classes at once for SRe2L's mixed batches, one class
otherwise; `per_unit` images of each), each with its own seed, so the result does not depend on how the
units are scheduled, and an interrupted run resumes with the unfinished units.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dcond.data import DataOptions, DatasetSpec, load_all
from dcond.data.sources import load_for_teacher
from dcond.data.folder import open_condensed
from dcond.data.images import class_indices
from dcond.engine import place, resolve_device
from dcond.errors import DcondError
from dcond.models import load_teachers
from dcond.stages.condensed import write_condensed
from dcond.synthesis import SYNTHESIZERS, Method, Observer, SynthContext, synthesize_unit
from dcond.units import plan_units


@dataclass
class SynthConfig:
    method: str = "sre2l"
    ipc: int = 10
    iterations: int = 1000
    lr: float | None = None  # None: the method's published default (see `defaults` in its module)
    r_bn: float | None = None  # weight of the BN-statistics loss
    first_bn_weight: float = 10.0
    crop_scale: tuple[float, float] | None = None
    jitter: int | None = None  # pixels of random roll per iteration
    flip: float = 0.5
    alpha: float = 0.5  # edc: weight of the global statistics against the class's
    ema_momentum: float = 0.8  # edc: EMA of the synthetic statistics
    per_unit: int | None = None  # images of each class per unit (default: 100 in all for mixed units, else IPC)
    init: Path | None = None  # edc: an images artifact to start from (default: random real images)
    teachers: list[Path] = field(default_factory=list)  # more observers (cycled) and relabel teachers
    relabel_epochs: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        SYNTHESIZERS.get(self.method)
        if self.ipc < 1 or self.iterations < 1 or (self.per_unit is not None and self.per_unit < 1):
            raise DcondError("--ipc, --iterations and --per-unit must be at least 1")
        if not 0 <= self.alpha <= 1 or not 0 <= self.ema_momentum < 1:
            raise DcondError("--alpha must lie in [0, 1] and --ema-momentum in [0, 1)")


def resolve_settings(cfg: SynthConfig, method: Method, spec: DatasetSpec) -> dict[str, Any]:
    """The config with the method's defaults filled in, scaled to the image size."""
    d = method.defaults
    per_unit = cfg.per_unit or (max(1, -(-100 // spec.num_classes)) if method.mix_classes else cfg.ipc)
    jitter = cfg.jitter if cfg.jitter is not None else round(d["jitter_fraction"] * spec.image_size)
    return asdict(cfg) | {"lr": cfg.lr or d["lr"], "r_bn": cfg.r_bn if cfg.r_bn is not None else d["r_bn"],
                          "crop_scale": cfg.crop_scale or d["crop_scale"], "jitter": jitter,
                          "per_unit": min(per_unit, cfg.ipc)}


def synthesize(teacher: Path, data: DataOptions, cfg: SynthConfig, out: Path | None = None,
               force: bool = False) -> Path:
    teacher_arts, models = load_teachers([teacher, *cfg.teachers])
    spec = teacher_arts[0].dataset
    method = SYNTHESIZERS.get(cfg.method)()
    device = resolve_device(cfg.device)
    observers = []
    for art, model in zip(teacher_arts, models):
        if not art.section.get("bn_layers"):
            raise DcondError(f"--method {cfg.method} matches BatchNorm statistics, but teacher {art.path} has no "
                             "BatchNorm layers (train one with norm=batch)")
        if method.needs_class_stats and not art.section.get("bn_stats"):
            raise DcondError(f"--method {cfg.method} needs the per-class BN statistics of teacher {art.path}, "
                             "which it does not hold")
        observers.append(Observer.from_artifact(art, place(model, device).eval(), device))
    settings = resolve_settings(cfg, method, spec)
    parents = [("teacher", a) for a in teacher_arts]
    init_images: dict[int, torch.Tensor] = {}
    if method.real_init:
        init_images, init_art = _real_images(cfg, data, spec)
        parents += [("init", init_art)] if init_art else []
    ctx = SynthContext(observers, spec, device, settings, init_images)
    units = plan_units(spec.num_classes, cfg.ipc, settings["per_unit"], cfg.seed, method.mix_classes)
    config = {"teachers": [a.digest for a in teacher_arts], "data": asdict(data), **settings}
    return write_condensed(
        "synthesize", spec, units, lambda unit: synthesize_unit(ctx, method, unit)[0], config=config,
        parents=parents, teachers=teacher_arts, models=models, relabel_epochs=cfg.relabel_epochs, out=out,
        force=force, title=f"{cfg.ipc} images per class of {spec.name} synthesized by {cfg.method}",
        summary=f"Optimised for {cfg.iterations} iterations to match the teacher's BatchNorm statistics; "
                "see preview.png.")


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
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + c)
            per_class[c] = load_all(train.take(idx[torch.randperm(len(idx), generator=gen)[: cfg.ipc]])).images
    short = [spec.classes[c] for c, imgs in per_class.items() if len(imgs) < cfg.ipc]
    if short:
        raise DcondError(f"fewer than --ipc {cfg.ipc} images to start from for class(es) {', '.join(short)}")
    return per_class, art
