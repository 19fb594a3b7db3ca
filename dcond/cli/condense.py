"""Commands that make condensed images: select."""

from typing import Annotated, Optional

import typer

from dcond.cli.common import (Data, DataRoot, Device, Download, Force, ImageSize, InputArtifact, Json, Out, Seed,
                              Subset, Teachers, data_options, emit, input_path)
from dcond.selection import SELECTORS
from dcond.stages.select import SelectConfig, select

C = SelectConfig
Ipc = Annotated[int, typer.Option("--ipc", help="Images per class.")]
RelabelEpochs = Annotated[int, typer.Option("--relabel-epochs", help="Also write a soft-label bank of this many "
                                                                     "epochs (a labels artifact in one stage).")]


def select_cmd(
    teacher_artifact: InputArtifact = None,
    data: Annotated[str, typer.Option("--data", help="Real data to select from (default: the teacher's "
                                                     "dataset).")] = "",
    data_root: DataRoot = None, download: Download = False, image_size: ImageSize = 32, subset: Subset = None,
    method: Annotated[str, typer.Option(help=f"{', '.join(SELECTORS.names())}.")] = C.method,
    ipc: Ipc = C.ipc,
    candidates: Annotated[Optional[int], typer.Option(help="Candidates per class, drawn at random (a cap "
                                                           "for speed).")] = None,
    factor: Annotated[int, typer.Option(help="rded: stitch factor×factor patches per image.")] = C.factor,
    crops: Annotated[int, typer.Option(help="rded: random crops scored per candidate.")] = C.crops,
    crop_scale: Annotated[tuple[float, float], typer.Option(help="rded: crop area range.")] = C.crop_scale,
    score_views: Annotated[int, typer.Option(help="score: augmented views per candidate.")] = C.score_views,
    eps2: Annotated[float, typer.Option(help="score: ε² of the coding rate.")] = C.eps2,
    score_weights: Annotated[tuple[float, float, float], typer.Option(
        help="score: weights of informativeness, discriminativeness, compressibility.")] = C.score_weights,
    teacher: Teachers = None, relabel_epochs: RelabelEpochs = C.relabel_epochs,
    seed: Seed = C.seed, device: Device = C.device, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Choose IPC real images per class with a teacher: random, herding, rded (patches) or score (coding rate)."""
    cfg = SelectConfig(method=method, ipc=ipc, candidates=candidates, factor=factor, crops=crops,
                       crop_scale=tuple(crop_scale), score_views=score_views, eps2=eps2,
                       score_weights=tuple(score_weights), teachers=list(teacher or []),
                       relabel_epochs=relabel_epochs, seed=seed, device=device)
    path = select(input_path(teacher_artifact), data_options(data, data_root, download, image_size, subset), cfg,
                  out, force)
    emit(path, json)
