"""Folders of image files: an ImageFolder (`root/<class>/<image>`) and the images inside a dcond artifact."""

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from dcond.data.images import FileImages, ImageDataset, TensorImages, decode_image, load_all
from dcond.spec import DatasetSpec
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


def _listing(paths: list[Path], root: Path) -> dict[str, int | str]:
    """How many files and a digest of their names relative to `root`: which files a folder held, in brief."""
    names = "\n".join(p.relative_to(root).as_posix() for p in paths)
    return {"count": len(paths), "sha256": hashlib.sha256(names.encode()).hexdigest()}


class ImageFolder:
    """A directory of class folders, or one with train/ and test/ (or val/) folders of class folders.

    Without a test/ or val/ folder, a class-balanced share of the training images (`holdout`, drawn with a
    fixed seed) is held out as the split to evaluate on: no metric is ever computed on images a model was
    trained on. The spec records the share and a digest of the held-out file names, so every later stage
    holds out the same files (and notices when the folder changed)."""

    def __init__(self, root: Path, image_size: int | None, holdout: float, recorded: DatasetSpec | None = None):
        """`image_size`: the side images are resized to; None: their own (`native_size`).
        `recorded`: the spec of an artifact made from this folder; its channels and normalisation are taken
        instead of decoding a sample of images to estimate them again (a later stage's start stays short)."""
        self.root = root.resolve()
        train_dir = self.root / "train" if (self.root / "train").is_dir() else self.root
        self.eval_dir = next((self.root / d for d in ("test", "val") if (self.root / d).is_dir()), None) \
            if train_dir != self.root else None
        classes, paths, labels = _scan(train_dir)
        self.image_size = image_size = image_size or native_size(paths, labels)
        held = set() if self.eval_dir else _held_out(labels, len(classes), holdout)
        self.eval_split = self.eval_dir.name if self.eval_dir else "holdout" if held else None
        self.train = [(p, c) for i, (p, c) in enumerate(zip(paths, labels)) if i not in held]
        self.held = [(paths[i], labels[i]) for i in sorted(held)]
        # the folder is known by its name and a digest of its file names: the manifest holds the path only
        # relative to the artifact (dcond.artifact.portable)
        source = {"type": "imagefolder", "path": str(self.root), "files": _listing(paths, train_dir)}
        if recorded is not None and recorded.source.get("path") == source["path"]:
            channels, mean, std = recorded.channels, recorded.mean, recorded.std
        else:
            channels, mean, std = self._normalisation(classes, paths, labels, image_size)
        if held:
            source["holdout"] = {"fraction": holdout, "seed": HOLDOUT_SEED,
                                 **_listing([p for p, _ in self.held], train_dir)}
        name = self.root.parent.name if self.root.name == "train" else self.root.name  # `--data imagenet/train`
        self.spec = DatasetSpec(name, tuple(classes), channels, image_size, mean, std, source)

    def _normalisation(self, classes: list[str], paths: list[Path], labels: list[int],
                       image_size: int) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
        """Channels (1 when every class's first image is grayscale) and per-channel mean and std, estimated on
        an even sample of the training images."""
        channels = 1 if all(_mode(paths[labels.index(c)]) in _GRAY_MODES for c in range(len(classes))) else 3
        picks = self.train[:: max(1, len(self.train) // _STATS_SAMPLE)]
        sample = [decode_image(p, channels, image_size) for p, _ in picks]
        pixels = torch.stack(sample).float().div(255).transpose(0, 1).flatten(1)
        return channels, tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).clamp_min(1e-3).tolist())

    def split(self, name: str) -> ImageDataset:
        if name == "train":
            return _files(self.train, self.spec.channels, self.image_size)
        if name == "holdout" and self.eval_split == "holdout":
            return _files(self.held, self.spec.channels, self.image_size)
        if self.eval_dir is not None and name == self.eval_dir.name:
            classes, paths, labels = _scan(self.eval_dir)
            if tuple(classes) != self.spec.classes:
                raise DcondError(f"{self.eval_dir} has classes {classes}, but the training folder has "
                                 f"{list(self.spec.classes)}")
            return _files(list(zip(paths, labels)), self.spec.channels, self.image_size)
        raise DcondError(f"{self.root} has no '{name}' split (it has: {', '.join(self.splits)})")

    @property
    def splits(self) -> list[str]:
        return ["train"] + ([self.eval_split] if self.eval_split else [])


def _held_out(labels: list[int], num_classes: int, fraction: float) -> set[int]:
    """Indices of a class-balanced random `fraction` of the images (at least one per class when the fraction
    is not 0, and never a class's last image)."""
    if fraction == 0:
        return set()
    labels_t = torch.tensor(labels)
    held = set()
    for c in range(num_classes):
        members = (labels_t == c).nonzero().flatten()
        n = min(len(members) - 1, max(1, round(fraction * len(members))))
        order = torch.randperm(len(members), generator=torch.Generator().manual_seed(HOLDOUT_SEED + c))
        held |= set(members[order[:n]].tolist())
    return held


def native_size(paths: list[Path], labels: list[int]) -> int:
    """The side of the images when they are square and share one size: judged on each class's first image and
    an even sample of the rest (headers only); otherwise an error that asks for --image-size."""
    firsts = [paths[labels.index(c)] for c in sorted(set(labels))]
    sizes = {}
    for path in firsts + paths[:: max(1, len(paths) // _SIZE_SAMPLE)]:
        try:
            with Image.open(path) as img:
                sizes.setdefault(img.size, path)
        except OSError as e:
            raise DcondError(f"cannot read image {path}: {e}") from None
        if len(sizes) > 1 or img.size[0] != img.size[1]:
            found = ", ".join(f"{w}×{h} ({p.name})" for (w, h), p in sizes.items())
            raise DcondError(f"the images are not all of one square size ({found}): pass --image-size N to "
                             "centre-crop and resize them to N × N")
    return next(iter(sizes))[0]


def _files(items: list[tuple[Path, int]], channels: int, size: int) -> FileImages:
    return FileImages([p for p, _ in items], torch.tensor([c for _, c in items], dtype=torch.long), channels, size)


def _mode(path: Path) -> str:
    try:
        with Image.open(path) as img:
            return img.mode
    except OSError as e:
        raise DcondError(f"cannot read image {path}: {e}") from None


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
        return source.artifact, load_all(source.split("train"))
    if not path.is_dir():
        raise DcondError(f"{path} is neither a dcond artifact nor an image folder")
    classes, paths, labels = _scan(path)
    if len(classes) != like.num_classes:
        raise DcondError(f"{path} has {len(classes)} class folders; the teacher knows {like.num_classes} classes")
    return None, load_all(FileImages(paths, torch.tensor(labels), like.channels, like.image_size))
