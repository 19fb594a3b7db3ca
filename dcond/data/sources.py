"""Resolve `--data` to a dataset: a registered name, an ImageFolder directory, or a dcond images artifact."""

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from dcond.data.images import ImageDataset, balanced_subset
from dcond.data.spec import DatasetSpec
from dcond.errors import DcondError
from dcond.registry import Registry

SPLITS = ("train", "test")


@dataclass
class DataOptions:
    data: str = "fashion-mnist"
    root: Path | None = None  # where named datasets live; default $DCOND_DATA_ROOT or ~/.cache/dcond/datasets
    download: bool = False
    image_size: int = 32  # ImageFolder images are centre-cropped and resized to this
    subset: int | None = None  # a class-balanced subset of this many images, for quick runs

    def __post_init__(self) -> None:
        if self.subset is not None and self.subset < 1:
            raise DcondError("--subset must be a positive number of images")
        if self.image_size < 8:
            raise DcondError("--image-size must be at least 8")

    @property
    def data_root(self) -> Path:
        return Path(self.root or os.environ.get("DCOND_DATA_ROOT") or Path.home() / ".cache/dcond/datasets")


class Source(Protocol):
    spec: DatasetSpec

    def split(self, name: str) -> ImageDataset: ...


DATASETS: Registry = Registry("dataset")


def open_source(opts: DataOptions) -> Source:
    if opts.data in DATASETS:
        return DATASETS.get(opts.data)(opts)
    path = Path(opts.data)
    if path.is_dir():
        from dcond.data.folder import ArtifactImages, ImageFolder

        return ArtifactImages(path) if (path / "dcond.json").exists() else ImageFolder(path, opts.image_size)
    raise DcondError(f"unknown dataset '{opts.data}': neither a registered name "
                     f"({', '.join(DATASETS.names())}) nor a directory")


def load_split(opts: DataOptions, split: str, source: Source | None = None) -> tuple[DatasetSpec, ImageDataset]:
    """The spec and one split of the dataset `opts` names, cut to `opts.subset` if set."""
    source = source or open_source(opts)
    dataset = source.split(split)
    if opts.subset is not None:
        dataset = balanced_subset(dataset, opts.subset, source.spec.num_classes)
    return source.spec, dataset


def recorded_data(spec: DatasetSpec) -> str:
    """The `--data` value that reopens the dataset a spec was made from."""
    src = spec.source
    data = src.get("name") if src.get("type") == "builtin" else src.get("path")
    if not data:
        raise DcondError(f"the artifact does not record where dataset '{spec.name}' came from; pass --data")
    return data


def load_for_teacher(opts: DataOptions, spec: DatasetSpec) -> tuple[DataOptions, DatasetSpec, ImageDataset]:
    """The real training data a teacher of `spec` looks at: `opts.data`, else the dataset `spec` records, at the
    spec's image size. Returns the resolved options, the data's spec and its train split."""
    opts = replace(opts, data=opts.data or recorded_data(spec), image_size=spec.image_size)
    real_spec, train = load_split(opts, "train")
    if real_spec.num_classes != spec.num_classes or real_spec.channels != spec.channels:
        raise DcondError(f"dataset '{real_spec.name}' has {real_spec.num_classes} classes of {real_spec.channels}-"
                         f"channel images; the teacher knows {spec.num_classes} classes of {spec.channels}-channel "
                         "ones")
    return opts, real_spec, train
