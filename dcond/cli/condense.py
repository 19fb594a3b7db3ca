"""Commands that make condensed images: select, synthesize (pixels, or a generator), sample (from a generator)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dcond.cli.common import (DataRoot, Device, Download, Force, ImageSize, InputArtifact, Json, Out, Seed,
                              Subset, Teachers, data_options, emit, input_path)
from dcond.config import GENERATIVE, GenerativeConfig, SampleConfig, SelectConfig, SynthConfig
from dcond.recipes import RECIPES
from dcond.selection import SELECTORS
from dcond.synthesis import SYNTHESIZERS

C, Y, G = SelectConfig, SynthConfig, GenerativeConfig
Ipc = Annotated[int, typer.Option("--ipc", help="Images per class.")]
RealData = Annotated[str, typer.Option("--data", help="Real data to draw from (default: the teacher's dataset).")]
RelabelEpochs = Annotated[int, typer.Option("--relabel-epochs", help="Also write a soft-label bank of this many "
                                                                     "epochs (a labels artifact in one stage).")]


def select_cmd(
    teacher_artifact: InputArtifact = None,
    data: RealData = "",
    data_root: DataRoot = None, download: Download = False, image_size: ImageSize = None, subset: Subset = None,
    method: Annotated[str, typer.Option(help=f"{', '.join(SELECTORS.names())}.")] = C.method,
    ipc: Ipc = C.ipc,
    recipe: Annotated[str, typer.Option(help=f"Whose settings fill in what no flag sets (rded): the authors' "
                                             f"script for data of this shape (auto), or {', '.join(RECIPES)}."
                                        )] = C.recipe,
    candidates: Annotated[Optional[int], typer.Option(help="Candidates per class, drawn at random (default: "
                                                           "rded's recipe, 300; other methods: all).")] = None,
    factor: Annotated[Optional[int], typer.Option(help="rded: stitch factor×factor patches per image (default: "
                                                       "the recipe's, 1 up to 64 pixels, 2 above).")] = None,
    crops: Annotated[Optional[int], typer.Option(help="rded: random crops scored per candidate (default: "
                                                      "5).")] = None,
    crop_scale: Annotated[Optional[tuple[float, float]], typer.Option(help="rded: crop area range (default: "
                                                                           "0.08 1).")] = None,
    score_views: Annotated[int, typer.Option(help="score: augmented views per candidate.")] = C.score_views,
    eps2: Annotated[float, typer.Option(help="score: ε² of the coding rate.")] = C.eps2,
    score_weights: Annotated[tuple[float, float, float], typer.Option(
        help="score: weights of informativeness, discriminativeness, compressibility.")] = C.score_weights,
    teacher: Teachers = None, relabel_epochs: RelabelEpochs = C.relabel_epochs,
    seed: Seed = C.seed, device: Device = C.device, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Choose IPC real images per class with a teacher: random, herding, rded (patches) or score (coding rate)."""
    cfg = SelectConfig(method=method, ipc=ipc, recipe=recipe, candidates=candidates, factor=factor, crops=crops,
                       crop_scale=tuple(crop_scale) if crop_scale else None, score_views=score_views, eps2=eps2,
                       score_weights=tuple(score_weights), teachers=list(teacher or []),
                       relabel_epochs=relabel_epochs, seed=seed, device=device)
    from dcond.stages.select import select

    path = select(input_path(teacher_artifact), data_options(data, data_root, download, image_size, subset), cfg,
                  out, force)
    emit(path, json)


def synthesize_cmd(
    teacher_artifact: InputArtifact = None,
    method: Annotated[str, typer.Option(help=f"{', '.join(SYNTHESIZERS.names())} (pixels), or {GENERATIVE} (a "
                                             "generator; it uses the options marked generative: and --iterations, "
                                             "--lr, --r-bn, --data, --amp).")] = Y.method,
    ipc: Ipc = Y.ipc,
    recipe: Annotated[str, typer.Option(help=f"Whose settings fill in what no flag sets: the method's authors' "
                                             f"script for data of this shape (auto), or {', '.join(RECIPES)}."
                                        )] = Y.recipe,
    iterations: Annotated[Optional[int], typer.Option(help="Optimisation steps per unit (default: the recipe's; "
                                                           "generative: training steps).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default: the method's).")] = None,
    r_bn: Annotated[Optional[float], typer.Option(help="Weight of the BN-statistics loss (default: the "
                                                       "method's).")] = None,
    first_bn_weight: float = Y.first_bn_weight,
    crop_scale: Annotated[Optional[tuple[float, float]], typer.Option(help="Crop area range (default: the "
                                                                           "method's).")] = None,
    jitter: Annotated[Optional[int], typer.Option(help="Random roll in pixels (default: scaled from "
                                                       "SRe2L's 32 of 224).")] = None,
    flip: Annotated[Optional[float], typer.Option(help="Chance of a flip per iteration (default: the "
                                                       "recipe's).")] = None,
    alpha: Annotated[float, typer.Option(help="edc: weight of global against class statistics.")] = Y.alpha,
    ema_momentum: Annotated[float, typer.Option(help="edc: EMA of synthetic statistics.")] = Y.ema_momentum,
    per_unit: Annotated[Optional[int], typer.Option(help="Images of each class per unit of work.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="edc: images artifact to start from (default: random "
                                                      "real images of --data).")] = None,
    data: RealData = "", data_root: DataRoot = None, download: Download = False,
    teacher: Teachers = None, relabel_epochs: RelabelEpochs = Y.relabel_epochs,
    latent_dim: Annotated[int, typer.Option(help="generative: size of the latent vector (and class "
                                                 "embedding).")] = G.latent_dim,
    gen_width: Annotated[int, typer.Option(help="generative: channels of the generator's layers.")] = G.width,
    gen_depth: Annotated[int, typer.Option(help="generative: upsampling blocks of the generator.")] = G.depth,
    gen_batch: Annotated[int, typer.Option(help="generative: generated images per class per step.")] = G.gen_batch,
    real_batch: Annotated[int, typer.Option(help="generative: real images per class per step.")] = G.real_batch,
    match_weight: Annotated[float, typer.Option(help="generative: weight of the feature-matching "
                                                     "loss.")] = G.match_weight,
    intra_weight: Annotated[float, typer.Option(help="generative: weight of the intra-class (diversity) "
                                                     "loss.")] = G.intra_weight,
    inter_weight: Annotated[float, typer.Option(help="generative: weight of the inter-class (class centres "
                                                     "apart) loss.")] = G.inter_weight,
    ce_weight: Annotated[float, typer.Option(help="generative: weight of the teacher's cross-entropy.")] = G.ce_weight,
    checkpoint_every: Annotated[int, typer.Option(help="generative: steps between resumable "
                                                       "checkpoints.")] = G.checkpoint_every,
    weights_dtype: Annotated[str, typer.Option(help="generative: stored weights, float16 or "
                                                    "float32.")] = G.weights_dtype,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = Y.amp,
    seed: Seed = Y.seed, device: Device = Y.device, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Recover IPC images per class from a teacher by matching its BatchNorm statistics (sre2l, classwise, edc),
    or train a class-conditional generator (generative; draw images from it with `dcond sample`)."""
    data_opts = data_options(data, data_root, download, 32, None)
    if method == GENERATIVE:  # a generator, not pixels: its own stage and config, sharing the common flags
        gen_cfg = GenerativeConfig(
            latent_dim=latent_dim, width=gen_width, depth=gen_depth, iterations=iterations or G.iterations,
            lr=G.lr if lr is None else lr,
            gen_batch=gen_batch, real_batch=real_batch, match_weight=match_weight,
            bn_weight=G.bn_weight if r_bn is None else r_bn, intra_weight=intra_weight, inter_weight=inter_weight,
            ce_weight=ce_weight, checkpoint_every=checkpoint_every, weights_dtype=weights_dtype, seed=seed,
            device=device, amp=amp)
        from dcond.stages.generative import train_generator

        emit(train_generator(input_path(teacher_artifact), data_opts, gen_cfg, out, force), json)
        return
    cfg = SynthConfig(method=method, ipc=ipc, recipe=recipe, iterations=iterations, lr=lr, r_bn=r_bn,
                      first_bn_weight=first_bn_weight, crop_scale=tuple(crop_scale) if crop_scale else None,
                      jitter=jitter, flip=flip, alpha=alpha, ema_momentum=ema_momentum, per_unit=per_unit,
                      init=init, teachers=list(teacher or []), relabel_epochs=relabel_epochs, seed=seed,
                      device=device, amp=amp)
    from dcond.stages.synthesize import synthesize

    emit(synthesize(input_path(teacher_artifact), data_opts, cfg, out, force), json)


def sample_cmd(
    generator_artifact: InputArtifact = None,
    ipc: Ipc = SampleConfig.ipc,
    seed: Seed = SampleConfig.seed, device: Device = SampleConfig.device, out: Out = None, force: Force = False,
    json: Json = False,
) -> None:
    """Draw IPC images per class from a generator artifact (synthesize --method generative) into an images
    artifact; the same seed gives the same images."""
    cfg = SampleConfig(ipc=ipc, seed=seed, device=device)
    from dcond.stages.sample import sample_images

    emit(sample_images(input_path(generator_artifact), cfg, out, force), json)
