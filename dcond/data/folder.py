"""Folders of image files: an ImageFolder (`root/<class>/<image>`) and the images inside a dcond artifact."""

from pathlib import Path

from typing import TYPE_CHECKING

import torch
from PIL import Image

from dcond.data.images import FileImages, ImageDataset, TensorImages, decode_image, load_all
from dcond.data.spec import DatasetSpec
from dcond.errors import DcondError

if TYPE_CHECKING:
    from dcond.artifact import Artifact

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_STATS_SAMPLE = 512  # images decoded to estimate mean and std


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


class ImageFolder:
    """A directory of class folders, or one with train/ and test/ (or val/) folders of class folders."""

    def __init__(self, root: Path, image_size: int):
        self.root, self.image_size = root.resolve(), image_size
        self.folders = {"train": self.root, "test": self.root}
        if (self.root / "train").is_dir():
            test = next((self.root / d for d in ("test", "val") if (self.root / d).is_dir()), None)
            self.folders = {"train": self.root / "train", "test": test}
        classes, paths, labels = _scan(self.folders["train"])
        channels = 1 if all(_mode(paths[labels.index(c)]) in _GRAY_MODES for c in range(len(classes))) else 3
        sample = [decode_image(p, channels, image_size) for p in paths[:: max(1, len(paths) // _STATS_SAMPLE)]]
        pixels = torch.stack(sample).float().div(255).transpose(0, 1).flatten(1)
        self.spec = DatasetSpec(self.root.name, tuple(classes), channels, image_size,
                                tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).clamp_min(1e-3).tolist()),
                                {"type": "imagefolder", "path": str(self.root)})

    def split(self, name: str) -> ImageDataset:
        folder = self.folders[name]
        if folder is None:
            raise DcondError(f"{self.root} has a train/ folder but no test/ or val/ folder")
        classes, paths, labels = _scan(folder)
        if tuple(classes) != self.spec.classes:
            raise DcondError(f"{folder} has classes {classes}, but {self.folders['train']} has "
                             f"{list(self.spec.classes)}")
        return FileImages(paths, torch.tensor(labels), self.spec.channels, self.image_size)


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

    def split(self, name: str) -> ImageDataset:
        if name != "train":
            raise DcondError(f"{self.artifact.path} is condensed training data; evaluate on the original dataset "
                             f"('{self.spec.name}') instead")
        return FileImages(self.paths, torch.tensor(self.labels), self.spec.channels, self.spec.image_size)


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
