"""Commands that train networks: train-teacher."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dcond.cli.common import Data, DataRoot, Device, Download, Force, ImageSize, Json, Out, Seed, Subset, data_options, emit
from dcond.models import parse_options
from dcond.stages.teacher import TeacherConfig, train_teacher

T = TeacherConfig
ModelOpts = Annotated[Optional[list[str]], typer.Option("--model-opt", help="Model option KEY=VALUE, repeatable "
                                                                            "(convnet: width, depth, norm).")]


def train_teacher_cmd(
    data: Data = "fashion-mnist", data_root: DataRoot = None, download: Download = False,
    image_size: ImageSize = 32, subset: Subset = None,
    model: Annotated[str, typer.Option(help="convnet, resnet18-cifar, timm:NAME or tv:NAME.")] = T.model,
    model_opt: ModelOpts = None,
    epochs: int = T.epochs, batch_size: int = T.batch_size, lr: float = T.lr,
    optimizer: Annotated[str, typer.Option(help="sgd or adamw.")] = T.optimizer,
    weight_decay: float = T.weight_decay,
    schedule: Annotated[str, typer.Option(help="cosine, smoothing or constant.")] = T.schedule,
    warmup_epochs: int = T.warmup_epochs, label_smoothing: float = T.label_smoothing,
    crop_pad: Annotated[int, typer.Option(help="Pad-and-crop shift in pixels, with flips; -1 turns "
                                               "augmentation off.")] = T.crop_pad,
    weights: Annotated[Optional[Path], typer.Option(help="Start from an outside checkpoint (.safetensors or "
                                                         ".pth, read with weights_only).")] = None,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = T.amp,
    workers: Annotated[int, typer.Option(help="Data-loading processes.")] = T.workers,
    seed: Seed = T.seed, device: Device = T.device, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Train a teacher network on real data; stores weights, test accuracy and per-class BN statistics."""
    cfg = TeacherConfig(model=model, model_options=parse_options(model_opt or []), epochs=epochs,
                        batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                        schedule=schedule, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
                        crop_pad=crop_pad, seed=seed, device=device, amp=amp, weights=weights, workers=workers)
    path = train_teacher(data_options(data, data_root, download, image_size, subset), cfg, out, force)
    emit(path, json)
