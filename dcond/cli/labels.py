"""Commands that make and shrink soft labels: relabel."""

from typing import Annotated, Optional

import typer

from dcond.cli.common import (CropScale, Device, Flip, Force, InputArtifact, Json, Mix, MixAlpha, MixProb, Out, Seed,
                              Teachers, emit, input_path, view_config)
from dcond.data.augment import ViewConfig
from dcond.stages.relabel import RelabelConfig, relabel

R, V = RelabelConfig, ViewConfig


def relabel_cmd(
    images: InputArtifact = None, teacher: Teachers = None,
    epochs: Annotated[int, typer.Option(help="Epochs of views to label: the student's epochs.")] = R.epochs,
    batch_size: Annotated[Optional[int], typer.Option(help="Views per batch, which the student replays "
                                                           "(default: a quarter of the images, 10 to 100).")] = None,
    temperature: Annotated[float, typer.Option(help="Recorded for the student's KL loss.")] = R.temperature,
    crop_scale: CropScale = V.crop_scale, flip: Flip = V.flip, mix: Mix = V.mix, mix_prob: MixProb = V.mix_prob,
    mix_alpha: MixAlpha = V.mix_alpha,
    dtype: Annotated[str, typer.Option(help="Stored logits: float16, bfloat16 or float32.")] = R.dtype,
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = R.amp,
    seed: Seed = R.seed, device: Device = R.device, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Store the teacher's soft labels for every view a student will see (a soft-label bank)."""
    cfg = RelabelConfig(epochs=epochs, batch_size=batch_size, temperature=temperature,
                        views=view_config(crop_scale, flip, mix, mix_prob, mix_alpha), dtype=dtype, seed=seed,
                        device=device, amp=amp)
    emit(relabel(input_path(images), list(teacher or []), cfg, out, force), json)
