"""What the stages that make condensed images (select, synthesize) share: units written as they finish,
then the image count and a preview, and with `relabel_epochs` a soft-label bank in the same stage."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dcond.artifact import Artifact, ArtifactWriter, config_key, describe_images, save_preview, written_images
from dcond.data import DatasetSpec, TensorImages
from dcond.distributed import world
from dcond.stages.relabel import RelabelConfig, write_bank
from dcond.units import Unit, run_units


def write_condensed(stage: str, spec: DatasetSpec, units: list[Unit], make: Callable[[Unit], torch.Tensor], *,
                    config: dict[str, Any], parents: list[tuple[str, Artifact]], teachers: list[Artifact],
                    models: list[torch.nn.Module], relabel_epochs: int, out: Path | None, force: bool,
                    title: str, summary: str) -> Path:
    """An images artifact (a labels artifact with `relabel_epochs`), resumable unit by unit."""
    kind = "labels" if relabel_epochs else "images"
    with ArtifactWriter(out, kind, spec, stage=stage, config=config, parents=parents, force=force,
                        resume_key=config_key(config)) as w:
        run_units(w, units, make, stage)
        if world().is_main:
            describe_images(w)
            save_preview(w)
        if relabel_epochs:
            write_bank(w, TensorImages(*written_images(w)), teachers, models,
                       RelabelConfig(epochs=relabel_epochs, seed=config["seed"], device=config["device"]))
        w.card |= {"title": title, "summary": summary,
                   "usage": ["dcond relabel <this folder> --teacher TEACHER --epochs 300",
                             "dcond train-student <this folder> --model convnet"]}
    return w.out
