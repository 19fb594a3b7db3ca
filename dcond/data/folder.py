"""Folders of image files: an ImageFolder (`root/<class>/<image>`) and the images inside a dcond artifact; and
what every source of labelled image files shares (`LabelledFiles`: splits, held-out images, size, normalisation)."""

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch
from PIL import Image

from dcond.data.images import FileImages, ImageDataset, TensorImages, decode_image, held_out, load_all
from dcond.spec import DatasetSpec, same_source
from dcond.errors import DcondError

if TYPE_CHECKING:
    from dcond.artifact import Artifact

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_STATS_SAMPLE = 512  # images decoded to estimate mean and std
_SIZE_SAMPLE = 2048  # image headers read (besides each class's first) to find the images' own size
HOLDOUT_SEED = 0


def _scan(folder: Path) -> tuple[list[str], list[Path], list[int]]:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DcondError(f"{folder} has no class folders (expected {folder}/<class>/<image>)")
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DcondError(f"class folder {folder / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += files
        labels += [c] * len(files)
    return classes, paths, labels


def names_digest(names: list[str]) -> dict[str, int | str]:
    """How many items and a digest of their names, one per line: which images a dataset or a split held."""
    return {"count": len(names), "sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}


class LabelledFiles(ABC):
    """Labelled image files (paths, or the encoded images of a table's rows) with a training split and a split to
    evaluate on: the data's own (`eval_split`), or else a class-balanced share of the training images
    (`holdout`, drawn with a fixed seed) held out, so that no metric is ever computed on images a model was
    trained on. The spec records the share and a digest of the held-out images' names (`held_names`), so every
    later stage holds out the same images (and notices when the data changed).

    `image_size`: the side images are resized to; None: their own (`native_size`). `recorded`: the spec of an
    artifact made from this data; its channels and normalisation are taken instead of decoding a sample of
    images to estimate them again (a later stage's start stays short). Subclasses hand out the images at given
    indices of `files` (`_images`) and the data's own evaluation split (`_eval_images`)."""

    def __init__(self, name: str, classes: list[str], files: Sequence[Path | IO[bytes]], labels: list[int],
                 name_of: Callable[[int], str], image_size: int | None, holdout: float, eval_split: str | None,
                 source: dict[str, Any], recorded: DatasetSpec | None):
        self.image_size = image_size = image_size or native_size(files, labels)
        held = set() if eval_split else held_out(torch.tensor(labels), len(classes), holdout, HOLDOUT_SEED)
        self.eval_split = eval_split or ("holdout" if held else None)
        self.train = [i for i in range(len(labels)) if i not in held]
        self.held = sorted(held)
        if recorded is not None and same_source(recorded.source, source):
            channels, mean, std = recorded.channels, recorded.mean, recorded.std
        else:
            channels, mean, std = _normalisation(files, labels, self.train, len(classes), image_size)
        self.held_names = [name_of(i) for i in self.held]
        if held:
            source["holdout"] = {"fraction": holdout, "seed": HOLDOUT_SEED, **names_digest(self.held_names)}
        self.spec = DatasetSpec(name, tuple(classes), channels, image_size, mean, std, source)

    def split(self, name: str) -> ImageDataset:
        if name == "train":
            return self._images(self.train)
        if name == "holdout" and self.eval_split == "holdout":
            return self._images(self.held)
        if name == self.eval_split:
            return self._eval_images()
        raise DcondError(f"{self.spec.name} has no '{name}' split (it has: {', '.join(self.splits)})")

    @property
    def splits(self) -> list[str]:
        return ["train"] + ([self.eval_split] if self.eval_split else [])

    @abstractmethod
    def _images(self, indices: list[int]) -> FileImages: ...

    @abstractmethod
    def _eval_images(self) -> FileImages: ...


class ImageFolder(LabelledFiles):
    """A directory of class folders, or one with train/ and test/ (or val/) folders of class folders; without a
    test/ or val/ folder, a share of the training images is held out (named by their paths relative to the
    training folder)."""

    def __init__(self, root: Path, image_size: int | None, holdout: float, recorded: DatasetSpec | None = None):
        self.root = root.resolve()
        train_dir = self.root / "train" if (self.root / "train").is_dir() else self.root
        self.eval_dir = next((self.root / d for d in ("test", "val") if (self.root / d).is_dir()), None) \
            if train_dir != self.root else None
        classes, self.paths, self.labels = _scan(train_dir)
        name = self.root.parent.name if self.root.name == "train" else self.root.name  # `--data imagenet/train`
        super().__init__(name, classes, self.paths, self.labels,
                         lambda i: self.paths[i].relative_to(train_dir).as_posix(), image_size, holdout,
                         self.eval_dir.name if self.eval_dir else None,
                         # known by its name and its files' names: the manifest holds the path only relative
                         # to the artifact (dcond.artifact.portable)
                         {"type": "imagefolder", "path": str(self.root),
                          "files": names_digest([p.relative_to(train_dir).as_posix() for p in self.paths])},
                         recorded)

    def _images(self, indices: list[int]) -> FileImages:
        return FileImages([self.paths[i] for i in indices], torch.tensor([self.labels[i] for i in indices]),
                          self.spec.channels, self.image_size)

    def _eval_images(self) -> FileImages:
        classes, paths, labels = _scan(self.eval_dir)
        if tuple(classes) != self.spec.classes:
            raise DcondError(f"{self.eval_dir} has classes {classes}, but the training folder has "
                             f"{list(self.spec.classes)}")
        return FileImages(paths, torch.tensor(labels), self.spec.channels, self.image_size)


def _normalisation(files: Sequence[Path | IO[bytes]], labels: list[int], train: list[int], num_classes: int,
                   image_size: int) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Channels (1 when every class's first image is grayscale) and per-channel mean and std, estimated on
    an even sample of the training images (`files` at the indices `train`)."""
    channels = 1 if all(_mode(files[labels.index(c)]) in _GRAY_MODES for c in range(num_classes)) else 3
    sample = [decode_image(files[i], channels, image_size) for i in train[:: max(1, len(train) // _STATS_SAMPLE)]]
    pixels = torch.stack(sample).float().div(255).transpose(0, 1).flatten(1)
    return channels, tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).clamp_min(1e-3).tolist())


def native_size(files: Sequence[Path | IO[bytes]], labels: list[int]) -> int:
    """The side of the images when they are square and share one size: judged on each class's first image and
    an even sample of the rest (headers only); otherwise an error that asks for --image-size."""
    firsts = [labels.index(c) for c in sorted(set(labels))]
    sizes = {}
    for i in firsts + list(range(0, len(files), max(1, len(files) // _SIZE_SAMPLE))):
        file = files[i]
        try:
            with Image.open(file) as img:
                sizes.setdefault(img.size, file)
        except OSError as e:
            raise DcondError(f"cannot read image {file}: {e}") from None
        if len(sizes) > 1 or img.size[0] != img.size[1]:
            found = ", ".join(f"{w}×{h} ({f.name})" for (w, h), f in sizes.items())
            raise DcondError(f"the images are not all of one square size ({found}): pass --image-size N to "
                             "centre-crop and resize them to N × N")
    return next(iter(sizes))[0]


def _mode(file: Path | IO[bytes]) -> str:
    try:
        with Image.open(file) as img:
            return img.mode
    except OSError as e:
        raise DcondError(f"cannot read image {file}: {e}") from None


class ArtifactImages:
    """The images of a dcond images (or labels) artifact, as a training set with the artifact's dataset spec."""

    def __init__(self, path: Path):
        from dcond.artifact import image_files, open_artifact

        self.artifact = open_artifact(path, kinds=("images", "labels"))
        self.spec = self.artifact.dataset
        self.paths, self.labels = image_files(self.artifact)
        self.eval_split = None

    def split(self, name: str) -> ImageDataset:
        if name != "train":
            raise DcondError(f"{self.artifact.path} is condensed training data; evaluate on the original dataset "
                             f"('{self.spec.name}') instead")
        return FileImages(self.paths, torch.tensor(self.labels), self.spec.channels, self.spec.image_size, exact=True)


def open_condensed(path: Path, like: DatasetSpec) -> tuple["Artifact | None", TensorImages]:
    """Condensed images for the classes of `like`: a dcond images or labels artifact, or an ImageFolder of
    someone's condensed images (decoded to `like`'s channels and size). Returns the artifact, if any."""
    if (path / "dcond.json").exists():
        source = ArtifactImages(path)
        if not source.spec.same_classes(like):
            raise DcondError(f"{path} holds images of other classes or shape than the teacher's dataset "
                             f"'{like.name}'")
        if not source.spec.same_validation(like):
            raise DcondError(f"{path} and the teacher hold out different validation splits (train-teacher "
                             "--validation): one chain must keep one, or it would measure on images it learnt from")
        return source.artifact, load_all(source.split("train"))
    if not path.is_dir():
        raise DcondError(f"{path} is neither a dcond artifact nor an image folder")
    classes, paths, labels = _scan(path)
    if len(classes) != like.num_classes:
        raise DcondError(f"{path} has {len(classes)} class folders; the teacher knows {like.num_classes} classes")
    return None, load_all(FileImages(paths, torch.tensor(labels), like.channels, like.image_size))
