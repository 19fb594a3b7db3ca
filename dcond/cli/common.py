"""What every command shares: option types, the input artifact (argument or stdin), and stdout output.

Conventions: stdout carries only the path of the artifact a command wrote (or JSON with --json), so
commands chain with `|`; everything for people goes to stderr.
"""

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from dcond.config import DEFAULT_HOLDOUT, DataOptions, ViewConfig
from dcond.errors import DcondError
from dcond.validate import MAX_SEED

Data = Annotated[str, typer.Option("--data", help="Dataset: fashion-mnist, mnist, cifar10, cifar100, an ImageFolder "
                                                  "directory, a dcond images artifact, or a Hugging Face dataset "
                                                  "hf:PATH_OR_NAME[:CONFIG][,image=COLUMN][,label=COLUMN] (saved "
                                                  "with save_to_disk, parquet, or a Hub name in the local cache).")]
DataRoot = Annotated[Optional[Path], typer.Option(
    "--data-root", help="Where named datasets live (default: $DCOND_DATA_ROOT or ~/.cache/dcond/datasets).")]
Download = Annotated[bool, typer.Option("--download", help="Download a named dataset with torchvision if missing.")]
ImageSize = Annotated[Optional[int], typer.Option(
    "--image-size", help="Side in pixels that ImageFolder and Hugging Face images are centre-cropped and resized "
                         "to (default: the images' own, when they share one square size).")]
Subset = Annotated[Optional[int], typer.Option("--subset", help="A class-balanced subset of N images (quick runs).")]
Out = Annotated[Optional[Path], typer.Option("--out", help="Output artifact folder (default: a new one in ./runs).")]
Force = Annotated[bool, typer.Option("--force", help="Replace an existing output artifact.")]
Json = Annotated[bool, typer.Option("--json", help="Print a JSON result on stdout instead of the path.")]
Seed = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed.")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
_TEACHER_HELP = "Teacher model artifact; repeat for several (their logits are averaged)."
Teachers = Annotated[Optional[list[Path]], typer.Option("--teacher", help=_TEACHER_HELP)]
RequiredTeachers = Annotated[list[Path], typer.Option("--teacher", help=_TEACHER_HELP)]
ModelOpts = Annotated[Optional[list[str]], typer.Option(
    "--model-opt", help="Model option KEY=VALUE, repeatable (convnet: width, depth, norm; wrn: depth, widen; "
                        "mobilenetv2-cifar, shufflenetv2-cifar: width).")]
ModelName = Annotated[str, typer.Option("--model", help="convnet, resnet18-cifar, mobilenetv2-cifar, "
                                                        "shufflenetv2-cifar, wrn, timm:NAME or tv:NAME.")]
CropScale = Annotated[tuple[float, float], typer.Option("--crop-scale", help="Random-resized-crop area range "
                                                                             "(SRe2L 0.08 1, EDC 0.5 1).")]
Flip = Annotated[float, typer.Option("--flip", help="Chance of a left-right flip.")]
Mix = Annotated[str, typer.Option("--mix", help="cutmix, mixup or none (per batch).")]
MixProb = Annotated[float, typer.Option("--mix-prob", help="Chance that a batch is mixed.")]
MixAlpha = Annotated[float, typer.Option("--mix-alpha", help="λ ~ Beta(α, α).")]
InputArtifact = Annotated[Optional[Path], typer.Argument(help="Input artifact folder; '-' or nothing reads its path "
                                                             "from stdin.", show_default=False)]


def data_options(data: str, data_root: Optional[Path], download: bool, image_size: Optional[int],
                 subset: Optional[int], holdout: float = DEFAULT_HOLDOUT, validation: float = 0.0) -> DataOptions:
    return DataOptions(data=data, root=data_root, download=download, image_size=image_size, subset=subset,
                       holdout=holdout, validation=validation)


def view_config(crop_scale: tuple[float, float], flip: float, mix: str, mix_prob: float,
                mix_alpha: float) -> ViewConfig:
    return ViewConfig(crop_scale=tuple(crop_scale), flip=flip, mix=mix, mix_prob=mix_prob, mix_alpha=mix_alpha)


def input_path(arg: Optional[Path]) -> Path:
    """The input artifact: the argument, or the last line a previous command printed on stdin."""
    if arg is not None and str(arg) != "-":
        return arg
    if sys.stdin is None or sys.stdin.isatty():
        raise DcondError("no input artifact: give its path, or pipe in the output of another dcond command")
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not lines:
        raise DcondError("no artifact path on stdin (did the previous command in the pipe fail?)")
    last = lines[-1]
    if last.startswith("{"):
        try:
            return Path(json.loads(last)["path"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DcondError("stdin holds JSON without a 'path'") from None
    return Path(last)


def emit(path: Path, as_json: bool, result: dict[str, Any] | None = None) -> None:
    """Report the artifact a command wrote: its path alone, or a JSON object with --json."""
    from dcond.artifact import open_artifact
    from dcond.distributed import world

    if not world().is_main:  # under torchrun, one rank reports
        return
    if not as_json:
        print(path, flush=True)
        return
    art = open_artifact(path)
    print(json.dumps({"path": str(path), "kind": art.kind, "digest": art.digest, **(result or {})}), flush=True)
