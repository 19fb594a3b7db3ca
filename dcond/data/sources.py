"""Resolve `--data` to a dataset: a registered name, a Hugging Face dataset (`hf:…`), an ImageFolder directory,
or a dcond images artifact."""

from dataclasses import replace
from pathlib import Path
from typing import Protocol

from dcond.config import DataOptions
from dcond.data.images import FileImages, ImageDataset, balanced_subset
from dcond.recipes import recipe_for
from dcond.spec import HELD_OUT, DatasetSpec, same_source
from dcond.errors import DcondError
from dcond.registry import Registry


class Source(Protocol):
    spec: DatasetSpec
    eval_split: str | None  # the split models are measured on ("test", "val", "holdout"); None: there is none
    # (a source with a "holdout" split also names its held-out images, in `held_names`)

    def split(self, name: str) -> ImageDataset: ...


DATASETS: Registry = Registry("dataset")

# Every ImageNet script of the methods (RDED, SRe2L, EDC, as torchvision's reference) tests on Resize(256) ->
# CenterCrop(224): the central 87.5 % of the shorter side. Their small-data scripts test whole images.
IMAGENET_EVAL_CROP = 224 / 256


def eval_crop(spec: DatasetSpec) -> float:
    """The share of each side of an image's centred square that a model is measured on."""
    return IMAGENET_EVAL_CROP if recipe_for(spec) == "imagenet" else 1.0


def open_source(opts: DataOptions, recorded: DatasetSpec | None = None) -> Source:
    """The dataset `opts` names, with a validation split when `opts.validation` asks for one; `recorded`, the
    spec of an artifact made from it, spares an image folder estimating its normalisation again."""
    source = _named_source(opts, recorded)
    if opts.validation:
        from dcond.data.validation import Validation

        return Validation(source, opts.validation)
    return source


def _named_source(opts: DataOptions, recorded: DatasetSpec | None) -> Source:
    if opts.data in DATASETS:
        return DATASETS.get(opts.data)(opts)
    if opts.data.startswith("hf:"):
        from dcond.data.hf import HFDataset

        return HFDataset(opts.data, opts.image_size, opts.holdout, recorded)
    path = Path(opts.data)
    if path.is_dir():
        from dcond.data.folder import ArtifactImages, ImageFolder

        return ArtifactImages(path) if (path / "dcond.json").exists() else \
            ImageFolder(path, opts.image_size, opts.holdout, recorded)
    raise DcondError(f"unknown dataset '{opts.data}': neither a registered name "
                     f"({', '.join(DATASETS.names())}), hf:PATH_OR_NAME, nor a directory")


def load_split(opts: DataOptions, split: str, source: Source | None = None) -> tuple[DatasetSpec, ImageDataset]:
    """The spec and one split of the dataset `opts` names, cut to `opts.subset` if set."""
    source = source or open_source(opts)
    dataset = source.split(split)
    if opts.subset is not None:
        dataset = balanced_subset(dataset, opts.subset, source.spec.num_classes)
    return source.spec, dataset


def load_eval_split(opts: DataOptions, source: Source | None = None) -> tuple[DatasetSpec, str, ImageDataset]:
    """The split a model is measured on, with its name: a test split, a val folder, or images held out of the
    training folder; never images the model was trained on. Its images are viewed as `eval_crop` says."""
    source = source or open_source(opts)
    if source.eval_split is None:
        raise DcondError(f"'{opts.data}' has no test split and --holdout 0 holds nothing out: there is nothing to "
                         "measure a model on that it was not trained on; pass --holdout F (e.g. 0.1), or give a "
                         "folder with train/ and test/ (or val/)")
    spec, dataset = load_split(opts, source.eval_split, source)
    if isinstance(dataset, FileImages):  # images held in memory (the built-in sets) are small data, tested whole
        dataset = dataset.centre_cropped(eval_crop(spec))
    return spec, source.eval_split, dataset


def recorded_data(spec: DatasetSpec) -> str:
    """The `--data` value that reopens the dataset a spec was made from."""
    src = spec.source
    if "path" in src and not Path(src["path"]).exists():  # moved apart from the artifact, or on another machine
        raise DcondError(f"the data of dataset '{spec.name}' is no longer where the artifact records it "
                         f"({src['path']}); pass --data with its location")
    if src.get("type") == "hf":
        from dcond.data.hf import HFRef

        return str(HFRef.from_source(src))
    data = src.get("name") if src.get("type") == "builtin" else src.get("path")
    if not data:
        raise DcondError(f"the artifact does not record where dataset '{spec.name}' came from; pass --data")
    return data


def recorded_options(opts: DataOptions, spec: DatasetSpec) -> DataOptions:
    """`opts` made to reopen the data of `spec` as it was split: its dataset when `opts.data` is empty, at the
    spec's image size, holding out the shares the spec records (a teacher's held-out and validation images must
    stay unseen by every later stage)."""
    holdout = spec.source.get("holdout", {}).get("fraction", opts.holdout)
    validation = spec.source.get("validation", {}).get("fraction", 0.0)
    return replace(opts, data=opts.data or recorded_data(spec), image_size=spec.image_size, holdout=holdout,
                   validation=validation)


def reopen(opts: DataOptions, spec: DatasetSpec) -> tuple[DataOptions, Source]:
    """The data `spec` was made from (or `opts.data`), opened again as `recorded_options` says."""
    opts = recorded_options(opts, spec)
    return opts, open_source(opts, spec)


def check_same_split(recorded: DatasetSpec, now: DatasetSpec) -> None:
    """Refuse data whose held-out or validation images are not those the artifact recorded (the data changed
    since)."""
    for split in HELD_OUT:
        was, is_ = recorded.source.get(split), now.source.get(split)
        if was and is_ and same_source(recorded.source, now.source) and was["sha256"] != is_["sha256"]:
            raise DcondError(f"the images held out of {recorded_data(now)} as its {split} split are not those "
                             f"recorded when the artifact was made ({was['count']} images then, {is_['count']} "
                             f"now): the data changed, so the {split} split may hold images a model was trained on")


def load_for_teacher(opts: DataOptions, spec: DatasetSpec) -> tuple[DataOptions, DatasetSpec, ImageDataset]:
    """The real training data a teacher of `spec` looks at: `opts.data`, else the dataset `spec` records, at the
    spec's image size and without its held-out images. Returns the resolved options, the data's spec and its
    train split."""
    opts, source = reopen(opts, spec)
    real_spec, train = load_split(opts, "train", source)
    if real_spec.num_classes != spec.num_classes or real_spec.channels != spec.channels:
        raise DcondError(f"dataset '{real_spec.name}' has {real_spec.num_classes} classes of {real_spec.channels}-"
                         f"channel images; the teacher knows {spec.num_classes} classes of {spec.channels}-channel "
                         "ones")
    check_same_split(spec, real_spec)
    return opts, real_spec, train
