"""Commands that train networks: train-teacher, train-student."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dcond.cli.common import (Data, DataRoot, Device, Download, Force, ImageSize, InputArtifact, Json, ModelName,
                              ModelOpts, Out, Seed, Subset, Teachers, data_options, emit, input_path)
from dcond.config import DEFAULT_HOLDOUT, StudentConfig, TeacherConfig
from dcond.student_recipes import STUDENT_RECIPES

T, S = TeacherConfig, StudentConfig


def train_teacher_cmd(
    data: Data = "fashion-mnist", data_root: DataRoot = None, download: Download = False,
    image_size: ImageSize = None, subset: Subset = None,
    holdout: Annotated[float, typer.Option(help="Share of each class of an ImageFolder without test/ or val/ "
                                                "held out to measure on (0: none, and then nothing to measure "
                                                "on; later stages keep the teacher's).")] = DEFAULT_HOLDOUT,
    validation: Annotated[float, typer.Option(help="Share of each class of the training split held out and "
                                                   "measured on instead of the test split, by this teacher and "
                                                   "every later stage of its chain: for choosing settings "
                                                   "without looking at the test split.")] = 0.0,
    model: ModelName = T.model,
    model_opt: ModelOpts = None,
    epochs: int = T.epochs, batch_size: int = T.batch_size, lr: float = T.lr,
    optimizer: Annotated[str, typer.Option(help="sgd or adamw.")] = T.optimizer,
    weight_decay: float = T.weight_decay,
    schedule: Annotated[str, typer.Option(help="cosine, smoothing or constant.")] = T.schedule,
    warmup_epochs: Annotated[int, typer.Option(help="Epochs of linear warm-up from 1 % of the "
                                                    "rate.")] = T.warmup_epochs,
    label_smoothing: float = T.label_smoothing,
    crop_pad: Annotated[int, typer.Option(help="Pad-and-crop shift in pixels, with flips; -1 turns "
                                               "augmentation off.")] = T.crop_pad,
    weights: Annotated[Optional[Path], typer.Option(help="Start from an outside checkpoint (.safetensors or "
                                                         ".pth, read with weights_only).")] = None,
    pretrained: Annotated[bool, typer.Option(help="Start from the weights torchvision or timm publish for the "
                                                  "tv:/timm: model (from the library's cache, downloaded there "
                                                  "once); a head for other classes is new. With --epochs 0 the "
                                                  "teacher is the published network.")] = T.pretrained,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = T.amp,
    workers: Annotated[int, typer.Option(help="Data-loading processes.")] = T.workers,
    seed: Seed = T.seed, device: Device = T.device, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Train a teacher network on real data; stores weights, accuracy on the test (or held-out) split and
    per-class BN statistics."""
    from dcond.models import parse_options
    from dcond.stages.teacher import train_teacher

    cfg = TeacherConfig(model=model, model_options=parse_options(model_opt or []), epochs=epochs,
                        batch_size=batch_size, lr=lr, optimizer=optimizer, weight_decay=weight_decay,
                        schedule=schedule, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
                        crop_pad=crop_pad, seed=seed, device=device, amp=amp, weights=weights, pretrained=pretrained,
                        workers=workers)
    data_opts = data_options(data, data_root, download, image_size, subset, holdout, validation)
    path = train_teacher(data_opts, cfg, out, force)
    emit(path, json)


def train_student_cmd(
    artifact: InputArtifact = None,
    recipe: Annotated[str, typer.Option(help=f"Whose student protocol fills in what no flag sets: "
                                             f"{', '.join(STUDENT_RECIPES.names())} (docs/methods.md).")] = S.recipe,
    model: ModelName = S.model, model_opt: ModelOpts = None,
    epochs: Annotated[Optional[int], typer.Option(help=f"Epochs (dcond: {S.epochs}).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Online and hard-label training; a bank replays "
                                                           "its own batches.")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help=f"adamw or sgd (dcond: {S.optimizer}).")] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Learning rate (dcond: {S.lr}).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help=f"Weight decay (dcond: {S.weight_decay}).")] = None,
    momentum: Annotated[Optional[float], typer.Option(help=f"SGD momentum (dcond: {S.momentum}).")] = None,
    nesterov: Annotated[Optional[bool], typer.Option(
        "--nesterov/--no-nesterov", help="SGD with Nesterov momentum (dcond: on).", show_default=False)] = None,
    decay_norm: Annotated[Optional[bool], typer.Option(
        "--decay-norm/--no-decay-norm", help="Weight decay on biases and normalisation weights too (dcond: on; "
                                             "the methods' students: off).", show_default=False)] = None,
    schedule: Annotated[Optional[str], typer.Option(help=f"cosine, smoothing, two-piece, linear, multistep or constant "
                                                         f"(dcond: {S.schedule}).")] = None,
    zeta: Annotated[Optional[float], typer.Option(help=f"ζ of the smoothing schedule 0.5(1+cos(πe/(ζE))) (also "
                                                       f"two-piece's first piece) and of linear 1−e/(ζE) (dcond: "
                                                       f"{S.zeta}).")] = None,
    schedule_step: Annotated[Optional[str], typer.Option(help="How often the rate follows the schedule: batch or "
                                                              f"epoch (dcond: {S.schedule_step}; the methods' "
                                                              "recipes: epoch).")] = None,
    warmup_epochs: Annotated[Optional[int], typer.Option(help="Epochs of linear warm-up from 1 % of the rate "
                                                              f"(dcond: {S.warmup_epochs}).")] = None,
    loss: Annotated[Optional[str], typer.Option(help="kl (soft labels with temperature), kl-t2 (the same × T²) or "
                                                     "mse-ce (MSE to the logits plus weighted cross-entropy) "
                                                     f"(dcond: {S.loss}).")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="KL temperature (default: the bank's).")] = None,
    ce_weight: Annotated[Optional[float], typer.Option(help=f"mse-ce: weight of the cross-entropy (dcond: "
                                                            f"{S.ce_weight}).")] = None,
    ema: Annotated[Optional[float], typer.Option(help="EMA decay of the weights used for evaluation; 0 turns it "
                                                      "off (dcond: 0).")] = None,
    randaugment: Annotated[Optional[bool], typer.Option(
        "--randaugment/--no-randaugment", help="Online and hard-label training: RandAugment each image first.",
        show_default=False)] = None,
    shift: Annotated[Optional[int], typer.Option(help="Online and hard-label training: pad each image by this many "
                                                      "pixels and crop it back at a random offset first (dcond: 0; "
                                                      "sre2l: 4).")] = None,
    strips: Annotated[Optional[int], typer.Option(help="Online and hard-label training: put each image's N column "
                                                       "strips, then its N row strips, in a random order first "
                                                       "(dcond: 1, none; rded: its factor).")] = None,
    best_of_last: Annotated[Optional[float], typer.Option(help="Also record the best evaluation (every 10 epochs) "
                                                               "of this last share of the run, apart from the "
                                                               "last epoch's (rded: 0.2).")] = None,
    teacher: Teachers = None,
    crop_scale: Annotated[Optional[tuple[float, float]], typer.Option(help="Random-resized-crop area range "
                                                                           "(dcond: 0.08 1).")] = None,
    flip: Annotated[Optional[float], typer.Option(help="Chance of a left-right flip (dcond: 0.5).")] = None,
    mix: Annotated[Optional[str], typer.Option(help="cutmix, mixup or none, per batch (dcond: cutmix).")] = None,
    mix_prob: Annotated[Optional[float], typer.Option(help="Chance that a batch is mixed (dcond: 1).")] = None,
    mix_alpha: Annotated[Optional[float], typer.Option(help="λ ~ Beta(α, α) (dcond: 1).")] = None,
    wrap: Annotated[bool, typer.Option(help="Reuse a bank's epochs cyclically past its length.")] = S.wrap,
    fresh_samples: Annotated[int, typer.Option(
        help="With a generator artifact: draw this many new images per class every epoch (labelled by --teacher "
             "online).")] = S.fresh_samples,
    eval: Annotated[bool, typer.Option(help="Evaluate on the dataset's test split at the end.")] = S.evaluate,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = S.amp,
    checkpoint_seconds: Annotated[float, typer.Option(
        help="Save the training state at the end of the first epoch this long after the last save; the same "
             "command run again after an interruption continues from it (0: every epoch).")] = S.checkpoint_seconds,
    seed: Seed = S.seed, device: Device = S.device, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Train a student on condensed images: replaying their soft-label bank, with --teacher online, or on hard
    labels; or on fresh samples of a generator every epoch (--fresh-samples)."""
    from dcond.models import parse_options
    from dcond.stages.student import student_config, train_student

    source = input_path(artifact)
    views = {"crop_scale": tuple(crop_scale) if crop_scale else None, "flip": flip, "mix": mix,
             "mix_prob": mix_prob, "mix_alpha": mix_alpha}
    cfg = student_config(source, recipe, views, model=model, model_options=parse_options(model_opt or []),
                         epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                         momentum=momentum, nesterov=nesterov, decay_norm=decay_norm, schedule=schedule, zeta=zeta,
                         schedule_step=schedule_step, warmup_epochs=warmup_epochs, loss=loss,
                         temperature=temperature, ce_weight=ce_weight, ema=ema, randaugment=randaugment, shift=shift,
                         strips=strips, best_of_last=best_of_last, teachers=list(teacher or []), wrap=wrap,
                         fresh_samples=fresh_samples, seed=seed, device=device, amp=amp, evaluate=eval,
                         checkpoint_seconds=checkpoint_seconds)
    emit(train_student(source, cfg, out, force), json)
