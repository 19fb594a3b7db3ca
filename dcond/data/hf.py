"""Hugging Face datasets: `--data hf:PATH_OR_NAME[:CONFIG][,image=COLUMN][,label=COLUMN]`.

PATH is a dataset saved with `save_to_disk`, a parquet file, or a folder `datasets.load_dataset` reads (parquet
files named by split: `train.parquet`, `test.parquet`, …); NAME is a Hub dataset in the local cache
(`HF_HUB_OFFLINE=1` reads it without a network). The images are the column of `datasets.Image` feature, the
labels the column of `ClassLabel` feature (whose names are the classes); `image=` and `label=` name them where
there are several. `datasets` is imported here only, and only when such data is opened: dcond runs without it.
"""

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcond.data.folder import LabelledFiles
from dcond.data.images import FileImages
from dcond.spec import DatasetSpec
from dcond.errors import DcondError
from dcond.log import console

PREFIX = "hf:"
EVAL_SPLITS = ("test", "validation")  # the split to evaluate on: the first of these the dataset has
_ROLES = {"image": "Image", "label": "ClassLabel"}  # column role -> the `datasets` feature that marks it


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DcondError("--data hf:… needs the Hugging Face `datasets` package: pip install 'dcond[hf]'") from None
    if not console.is_terminal:  # as dcond's own: no progress bars where no person watches (a pipe, a CI log)
        datasets.disable_progress_bars()
    return datasets


@dataclass(frozen=True)
class HFRef:
    """What an `hf:` value names: a local dataset (its absolute path) or a Hub name, a config, and the columns
    given by name."""

    dataset: str
    config: str | None
    columns: dict[str, str]

    @classmethod
    def parse(cls, data: str) -> "HFRef":
        ref, *options = data.removeprefix(PREFIX).split(",")
        columns = {}
        for option in options:
            role, _, column = option.partition("=")
            if role not in _ROLES or not column:
                raise DcondError(f"--data {data}: '{option}' is neither image=COLUMN nor label=COLUMN")
            columns[role] = column
        dataset, config = ref, None
        if ":" in ref and not Path(ref).expanduser().exists():
            dataset, _, config = ref.rpartition(":")
        path = Path(dataset).expanduser()
        if path.exists():
            dataset = str(path.resolve())
        elif not dataset or path.is_absolute() or dataset.startswith((".", "~")):
            raise DcondError(f"--data {data}: no such file or folder '{dataset}' (hf:PATH_OR_NAME[:CONFIG])")
        return cls(dataset, config or None, columns)

    @property
    def local(self) -> Path | None:
        return Path(self.dataset) if Path(self.dataset).is_absolute() else None

    @property
    def name(self) -> str:
        """The dataset's own name: its folder's or file's name (the folder's for a file named after the train
        split: `cifar/train.parquet`), or the Hub name without its owner."""
        if self.local is None:
            return self.dataset.rpartition("/")[2]
        return self.local.parent.name if self.local.is_file() and self.local.stem.startswith("train") \
            else self.local.stem

    def to_source(self) -> dict[str, Any]:
        """What a spec records: a local dataset's path (which the manifest holds relative to the artifact) or the
        Hub name, and the config and columns given."""
        named = {"path": self.dataset} if self.local else {"name": self.dataset}
        return named | ({"config": self.config} if self.config else {}) | ({"columns": self.columns} if self.columns
                                                                          else {})

    @classmethod
    def from_source(cls, source: dict[str, Any]) -> "HFRef":
        return cls(source.get("path") or source["name"], source.get("config"), dict(source.get("columns", {})))

    def __str__(self) -> str:
        """The `--data` value that names the same data from any working directory."""
        config = f":{self.config}" if self.config else ""
        return PREFIX + self.dataset + config + "".join(f",{r}={c}" for r, c in sorted(self.columns.items()))


class EncodedImages(Sequence):
    """A table's image column as files for `decode_image`: the images, encoded (PNG, JPEG, …) as `datasets`
    stores them or the files it names, of the table's rows `rows`, read one at a time when asked for."""

    def __init__(self, table: Any, column: str, split: str, rows: torch.Tensor):
        self.table, self.column, self.split, self.rows = table, column, split, rows

    @classmethod
    def of(cls, table: Any, column: str, split: str) -> "EncodedImages":
        """Every row's image; `datasets` hands out the stored bytes, not a decoded image."""
        undecoded = table.select_columns([column]).cast_column(column, _datasets().Image(decode=False))
        return cls(undecoded, column, split, torch.arange(len(table)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> "Path | NamedBytes":
        row = int(self.rows[i])
        cell = self.table[row][self.column]
        if cell["bytes"] is None:
            return Path(cell["path"])
        return NamedBytes(cell["bytes"], f"{self.split} row {row}" + (f" ({cell['path']})" if cell["path"] else ""))

    def take(self, indices: torch.Tensor) -> "EncodedImages":
        return EncodedImages(self.table, self.column, self.split, self.rows[indices])


class NamedBytes(io.BytesIO):
    """An encoded image in memory, named for messages (which image could not be read, or has another size)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


class RowImages(FileImages):
    """Images of a table's rows, decoded on demand as image files are (`FileImages`); a subset stays a list of
    row numbers, never a copy of the encoded images."""

    files: EncodedImages

    def take(self, indices: torch.Tensor) -> "RowImages":
        return RowImages(self.files.take(indices), self.labels[indices], self.channels, self.size, crop=self.crop)


class HFDataset(LabelledFiles):
    """A Hugging Face dataset: its train split (all of it, for a dataset without splits), evaluated on its test
    (else validation) split; with neither, a share of the training images is held out (named by their row
    numbers)."""

    def __init__(self, data: str, image_size: int | None, holdout: float, recorded: DatasetSpec | None = None):
        self.ref = HFRef.parse(data)
        self.tables = _load(self.ref)
        if "train" not in self.tables:
            raise DcondError(f"{self.ref} has no train split (it has: {', '.join(self.tables)})")
        train = self.tables["train"]
        self.image_column, self.label_column = (_column(train.features, role, self.ref) for role in _ROLES)
        classes = list(train.features[self.label_column].names)
        self.labels = _labels(train, self.label_column, len(classes), "train")
        empty = (torch.bincount(self.labels, minlength=len(classes)) == 0).nonzero().flatten()
        if len(empty):
            raise DcondError(f"{self.ref}: the train split has no images of class(es) "
                             f"{', '.join(classes[c] for c in empty.tolist())}")
        self.files = EncodedImages.of(train, self.image_column, "train")
        super().__init__(self.ref.name, classes, self.files, self.labels.tolist(), str, image_size, holdout,
                         next((s for s in EVAL_SPLITS if s in self.tables), None),
                         {"type": "hf", **self.ref.to_source()}, recorded)

    def _images(self, indices: list[int]) -> RowImages:
        picks = torch.tensor(indices, dtype=torch.long)
        return RowImages(self.files.take(picks), self.labels[picks], self.spec.channels, self.image_size)

    def _eval_images(self) -> RowImages:
        table = self.tables[self.eval_split]
        feature = table.features.get(self.label_column)
        if getattr(feature, "names", None) != list(self.spec.classes):
            raise DcondError(f"{self.ref}: the {self.eval_split} split's '{self.label_column}' column has other "
                             f"classes than the train split's ({feature})")
        labels = _labels(table, self.label_column, self.spec.num_classes, self.eval_split)
        return RowImages(EncodedImages.of(table, self.image_column, self.eval_split), labels, self.spec.channels,
                         self.image_size)


def _load(ref: HFRef) -> dict[str, Any]:
    """The dataset's splits by name (a dataset without splits: "train")."""
    datasets = _datasets()
    local = ref.local
    saved = local and ((local / "dataset_dict.json").exists() or (local / "state.json").exists())
    if local and local.is_file() and local.suffix != ".parquet":
        raise DcondError(f"{ref}: a file must be a parquet file (or give a folder, or a Hub name)")
    if ref.config and (saved or local and local.is_file()):
        raise DcondError(f"{ref}: a dataset saved with save_to_disk or a parquet file has no configs")
    try:  # (a Hub dataset with a loading script raises RuntimeError: `datasets` no longer runs them)
        if saved:
            loaded = datasets.load_from_disk(str(local))  # memory-mapped where it lies, not copied
        elif local and local.is_file():
            loaded = datasets.load_dataset("parquet", data_files={"train": str(local)})
        else:
            loaded = datasets.load_dataset(ref.dataset, ref.config)
    except (OSError, ValueError, RuntimeError, datasets.exceptions.DatasetsError) as e:
        raise DcondError(f"cannot load {ref}: {e}".replace("\n", " ")) from None
    return {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)


def _column(features: dict[str, Any], role: str, ref: HFRef) -> str:
    """The column of `role` ("image" or "label"): the one named in `ref`, else the only one of its feature."""
    kind = _ROLES[role]
    found = [name for name, feature in features.items() if isinstance(feature, getattr(_datasets(), kind))]
    named = ref.columns.get(role)
    if named in found or named is None and len(found) == 1:
        return named or found[0]
    columns = ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())
    problem = f"no {kind} column '{named}'" if named else f"{'several' if found else 'no'} {kind} columns"
    raise DcondError(f"{ref} has {problem} (its columns: {columns}); name the {role} column with "
                     f"{PREFIX}…,{role}=COLUMN")


def _labels(table: Any, column: str, num_classes: int, split: str) -> torch.Tensor:
    labels = torch.from_numpy(table.select_columns([column]).with_format("numpy")[:][column].astype(np.int64))
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DcondError(f"the {split} split has rows without a label (-1) or with a label past the "
                         f"{num_classes} classes in column '{column}'")
    return labels
