"""Datasets: named ones (registered in `builtin`), ImageFolders and dcond images artifacts."""

from dcond.data import builtin  # noqa: F401  (registers the named datasets)
from dcond.data.images import ImageDataset, TensorImages, batches, load_all, to_input, to_uint8
from dcond.data.sources import DATASETS, DataOptions, load_split, open_source, recorded_data
from dcond.data.spec import DatasetSpec

__all__ = ["DATASETS", "DataOptions", "DatasetSpec", "ImageDataset", "TensorImages", "batches", "load_all",
           "load_split", "open_source", "recorded_data", "to_input", "to_uint8"]
