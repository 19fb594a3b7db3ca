"""Commands that train networks: train-teacher, train-student."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dcond.cli.common import (CropScale, Data, DataRoot, Device, Download, Flip, Force, ImageSize, InputArtifact, Json,
                              Mix, MixAlpha, MixProb, ModelName, ModelOpts, Out, Seed, Subset, Teachers, data_options,
                              emit, input_path, view_config)
from dcond.data.augment import ViewConfig
from dcond.data.sources import DEFAULT_HOLDOUT
from dcond.models import parse_options
from dcond.stages.student import StudentConfig, train_student
from dcond.stages.teacher import TeacherConfig, train_teacher

T, S, V = TeacherConfig, StudentConfig, ViewConfig


def train_teacher_cmd(
    data: Data = "fashion-mnist", data_root: DataRoot = None, download: Download = False,
    image_size: ImageSize = 32, subset: Subset = None,
    holdout: Annotated[float, typer.Option(help="Share of each class of an ImageFolder without test/ or val/ "
                                                "held out to measure on (0: none, and then nothing to measure "
                                                "on; later stages keep the teacher's).")] = DEFAULT_HOLDOUT,
    model: ModelName = T.model,
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
    """Train a teacher network on real data; stores weights, accuracy on the test (or held-out) split and
    per-class BN statistics."""
    cfg = TeacherConfig(model=model, model_options=parse_options(model_opt or []), epochs=epochs,
                        batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                        schedule=schedule, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
                        crop_pad=crop_pad, seed=seed, device=device, amp=amp, weights=weights, workers=workers)
    path = train_teacher(data_options(data, data_root, download, image_size, subset, holdout), cfg, out, force)
    emit(path, json)


def train_student_cmd(
    artifact: InputArtifact = None,
    model: ModelName = S.model, model_opt: ModelOpts = None,
    epochs: int = S.epochs,
    batch_size: Annotated[Optional[int], typer.Option(help="Online and hard-label training; a bank replays "
                                                           "its own batches.")] = None,
    optimizer: Annotated[str, typer.Option(help="adamw or sgd.")] = S.optimizer,
    lr: float = S.lr, weight_decay: float = S.weight_decay,
    schedule: Annotated[str, typer.Option(help="cosine, smoothing or constant.")] = S.schedule,
    zeta: Annotated[float, typer.Option(help="ζ of the smoothing schedule 0.5(1+cos(πe/(ζE))).")] = S.zeta,
    warmup_epochs: int = S.warmup_epochs,
    loss: Annotated[str, typer.Option(help="kl (soft labels with temperature) or mse-ce (MSE to the logits "
                                           "plus weighted cross-entropy).")] = S.loss,
    temperature: Annotated[Optional[float], typer.Option(help="KL temperature (default: the bank's).")] = None,
    ce_weight: float = S.ce_weight,
    ema: Annotated[float, typer.Option(help="EMA decay of the weights used for evaluation; 0 turns it off.")] = S.ema,
    teacher: Teachers = None,
    crop_scale: CropScale = V.crop_scale, flip: Flip = V.flip, mix: Mix = V.mix, mix_prob: MixProb = V.mix_prob,
    mix_alpha: MixAlpha = V.mix_alpha,
    wrap: Annotated[bool, typer.Option(help="Reuse a bank's epochs cyclically past its length.")] = S.wrap,
    fresh_samples: Annotated[int, typer.Option(
        help="With a generator artifact: draw this many new images per class every epoch (labelled by --teacher "
             "online).")] = S.fresh_samples,
    eval: Annotated[bool, typer.Option(help="Evaluate on the dataset's test split at the end.")] = S.evaluate,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = S.amp,
    seed: Seed = S.seed, device: Device = S.device, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Train a student on condensed images: replaying their soft-label bank, with --teacher online, or on hard
    labels; or on fresh samples of a generator every epoch (--fresh-samples)."""
    cfg = StudentConfig(model=model, model_options=parse_options(model_opt or []), epochs=epochs,
                        batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                        schedule=schedule, zeta=zeta, warmup_epochs=warmup_epochs, loss=loss,
                        temperature=temperature, ce_weight=ce_weight, ema=ema, teachers=list(teacher or []),
                        views=view_config(crop_scale, flip, mix, mix_prob, mix_alpha), wrap=wrap,
                        fresh_samples=fresh_samples, seed=seed,
                        device=device, amp=amp, evaluate=eval)
    emit(train_student(input_path(artifact), cfg, out, force), json)
