"""Commands that make and shrink soft labels: relabel, compress-labels, import-labels."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from dcond.cli.common import (CropScale, Device, Flip, Force, InputArtifact, Json, Mix, MixAlpha, MixProb, Out, Seed,
                              RequiredTeachers, emit, input_path, view_config)
from dcond.compression import METHODS
from dcond.config import CompressConfig, ImportConfig, RelabelConfig, ViewConfig
from dcond.validate import MAX_SEED

R, V, C, Imp = RelabelConfig, ViewConfig, CompressConfig, ImportConfig
Temperature = Annotated[float, typer.Option(help="Recorded for the student's KL loss.")]


def relabel_cmd(
    images: InputArtifact = None, teacher: RequiredTeachers = ...,
    epochs: Annotated[int, typer.Option(help="Epochs of views to label: the student's epochs.")] = R.epochs,
    batch_size: Annotated[Optional[int], typer.Option(help="Views per batch, which the student replays "
                                                           "(default: a quarter of the images, 10 to 100).")] = None,
    temperature: Temperature = R.temperature,
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
    from dcond.stages.relabel import relabel

    emit(relabel(input_path(images), teacher, cfg, out, force), json)


def compress_labels_cmd(
    labels: InputArtifact = None,
    method: Annotated[str, typer.Option(help=f"{', '.join(METHODS.names())}, or a chain of them joined by '+' "
                                             "(prune+lowrank+quantize).")] = C.method,
    keep: Annotated[float, typer.Option(help="prune: fraction of the stored batches kept, pooled across "
                                             "epochs.")] = C.keep,
    pick: Annotated[str, typer.Option(help="prune: which batches: the chronologically first full ones (as "
                                           "released) or random (with --seed).")] = C.pick,
    k: Annotated[int, typer.Option("--k", help="topk: classes kept per view.")] = C.k,
    fill: Annotated[str, typer.Option(help="topk: the kept classes share all the mass (renormalize, as label "
                                           "pruning's quantised follow-up trains), or the other classes share the "
                                           "remaining mass (uniform, FKD) or take the smallest kept value (min).")]
    = C.fill,
    rank: Annotated[Optional[int], typer.Option(help="lowrank: rank per image (with --energy, its cap).")] = None,
    energy: Annotated[Optional[float], typer.Option(help="lowrank: per image, the smallest rank keeping this share "
                                                         "of the squared singular values.")] = None,
    dtype: Annotated[str, typer.Option(help="quantize: int8 or int4 (one scale per row), float16 or "
                                            "bfloat16.")] = C.dtype,
    zstd_level: Annotated[int, typer.Option(help="zstandard-compress every file at this level (1-22); 0: "
                                                 "off.")] = C.zstd_level,
    seed: Seed = C.seed, out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Shrink a soft-label bank (prune, topk, lowrank, quantize, zstd); train-student reads the result directly."""
    cfg = CompressConfig(method=method, keep=keep, pick=pick, k=k, fill=fill, rank=rank, energy=energy, dtype=dtype,
                         zstd_level=zstd_level, seed=seed)
    from dcond.stages.compress import compress_labels

    emit(compress_labels(input_path(labels), cfg, out, force), json)


def import_labels_cmd(
    bank: Annotated[Path, typer.Argument(help="The relabel folder (epoch_E/batch_B.tar).", show_default=False)],
    images: Annotated[Path, typer.Option(help="The images the bank labels: a dcond images artifact or an image "
                                              "folder.", show_default=False)],
    input_size: Annotated[int, typer.Option(help="The side of the views the relabel script rendered (its "
                                                 "--input-size).", show_default=False)],
    data: Annotated[str, typer.Option(help="For an image folder: the dataset its images condense.")] = Imp.data,
    fkd_seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="The relabel script's --fkd-seed.")] = Imp.fkd_seed,
    temperature: Temperature = Imp.temperature,
    dtype: Annotated[str, typer.Option(help="Stored logits: float16, bfloat16 or float32.")] = Imp.dtype,
    out: Out = None, force: Force = False, json: Json = False,
) -> None:
    """Read a soft-label bank made by the SRe2L / FKD relabel scripts into a dcond labels artifact."""
    cfg = ImportConfig(input_size=input_size, fkd_seed=fkd_seed, temperature=temperature, dtype=dtype, data=data)
    from dcond.stages.import_labels import import_labels

    emit(import_labels(bank, images, cfg, out, force), json)
