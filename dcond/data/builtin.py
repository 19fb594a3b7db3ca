"""The named datasets: Fashion-MNIST (the default), MNIST, CIFAR-10 and CIFAR-100, read from a local root."""

from dataclasses import dataclass
from pathlib import Path

import torch

from dcond.data.idx import read_idx
from dcond.data.images import ImageDataset, TensorImages
from dcond.data.sources import DATASETS, DataOptions
from dcond.spec import DatasetSpec
from dcond.errors import DcondError

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(folders: list[Path]) -> Path | None:
    for folder in folders:
        if all((folder / f).exists() or (folder / f"{f}.gz").exists() for pair in _IDX_FILES.values() for f in pair):
            return folder
    return None


@dataclass
class IdxSource:
    """MNIST-style data: four IDX files, gzipped or not, in one folder."""

    spec: DatasetSpec
    folder: Path
    eval_split = "test"

    def split(self, name: str) -> ImageDataset:
        images_file, labels_file = (self._file(f) for f in _IDX_FILES[name])
        images, labels = read_idx(images_file), read_idx(labels_file).long()
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or \
                tuple(images.shape[1:]) != (28, 28) or int(labels.max()) >= self.spec.num_classes:
            raise DcondError(f"{self.folder} holds malformed {self.spec.name} files")
        return TensorImages(images.unsqueeze(1), labels)

    def _file(self, name: str) -> Path:
        plain = self.folder / name
        return plain if plain.exists() else self.folder / f"{name}.gz"


def _idx_source(name: str, tv_name: str, classes: tuple[str, ...], mean: float, std: float, system_dir: str | None):
    def open_idx(opts: DataOptions) -> IdxSource:
        root = opts.data_root
        folders = [root / name, root / tv_name / "raw", root] + ([Path(system_dir)] if system_dir else [])
        folder = _find_idx(folders)
        if folder is None and opts.download:
            import torchvision

            getattr(torchvision.datasets, tv_name)(root, download=True)
            folder = _find_idx(folders)
        if folder is None:
            hint = "apt-get install dataset-fashion-mnist, or " if name == "fashion-mnist" else ""
            raise DcondError(f"{name} not found: looked for its IDX files in {', '.join(map(str, folders))}; "
                             f"get it with {hint}--download")
        spec = DatasetSpec(name, classes, 1, 28, (mean,), (std,), {"type": "builtin", "name": name})
        return IdxSource(spec, folder)

    return open_idx


DATASETS.register("fashion-mnist")(_idx_source("fashion-mnist", "FashionMNIST", FASHION_CLASSES, 0.2860, 0.3530,
                                               "/usr/share/datasets/fashion-mnist"))
DATASETS.register("mnist")(_idx_source("mnist", "MNIST", tuple("0123456789"), 0.1307, 0.3081, None))


@dataclass
class CifarSource:
    """CIFAR-10/100 as torchvision stores them (cifar-10-batches-py, cifar-100-python) under the root."""

    spec: DatasetSpec
    opts: DataOptions
    tv_name: str
    eval_split = "test"

    def split(self, name: str) -> ImageDataset:
        ds = _open_cifar(self.tv_name, self.opts, train=name == "train")
        return TensorImages(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets))


def _open_cifar(tv_name: str, opts: DataOptions, train: bool):
    import torchvision

    try:
        return getattr(torchvision.datasets, tv_name)(opts.data_root, train=train, download=opts.download)
    except RuntimeError:
        raise DcondError(f"{tv_name} not found under {opts.data_root} (torchvision's layout); "
                         "pass --data-root DIR, or --download") from None


def _cifar_source(name: str, tv_name: str, mean: tuple[float, ...], std: tuple[float, ...]):
    def open_cifar(opts: DataOptions) -> CifarSource:
        classes = tuple(_open_cifar(tv_name, opts, train=False).classes)
        return CifarSource(DatasetSpec(name, classes, 3, 32, mean, std, {"type": "builtin", "name": name}),
                           opts, tv_name)

    return open_cifar


DATASETS.register("cifar10")(_cifar_source("cifar10", "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
DATASETS.register("cifar100")(_cifar_source("cifar100", "CIFAR100", (0.5071, 0.4865, 0.4409),
                                            (0.2673, 0.2564, 0.2762)))
