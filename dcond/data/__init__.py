"""Datasets: named ones (registered in `builtin`), ImageFolders and dcond images artifacts."""

from dcond.data import builtin  # noqa: F401  (registers the named datasets)
from dcond.data.images import ImageDataset, InputImages, TensorImages, batches, load_all, to_input, to_uint8
from dcond.data.sources import (DATASETS, DataOptions, check_same_split, load_eval_split, load_split, open_source,
                                reopen)
from dcond.spec import DatasetSpec

__all__ = ["DATASETS", "DataOptions", "DatasetSpec", "ImageDataset", "InputImages", "TensorImages", "batches",
           "check_same_split", "load_all", "load_eval_split", "load_split", "open_source", "reopen", "to_input",
           "to_uint8"]
