"""The dataset spec every artifact carries: which classes, in which order, and how pixels are scaled."""

from dataclasses import asdict, dataclass, field
from typing import Any

from dcond.errors import DcondError
from dcond.validate import MAX_CLASSES, MAX_IMAGE_SIZE, MAX_IMAGES, Fields

# the source keys that record images held out of training: a folder's held-out split, a validation split
HELD_OUT = ("holdout", "validation")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    channels: int
    image_size: int  # side of the square images, in pixels
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # where the data came from, so later stages can find it again: {"type": builtin|imagefolder|hf|artifact, ...}
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise DcondError(f"dataset '{self.name}': {self.channels} channels, expected 1 or 3")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DcondError(f"dataset '{self.name}': mean/std must have one value per channel")
        if len(self.classes) < 2:
            raise DcondError(f"dataset '{self.name}' has {len(self.classes)} class(es); at least 2 are needed")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"classes": list(self.classes), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "dataset") -> "DatasetSpec":
        """A spec read from a manifest, every field checked (the message names `where.field`)."""
        f = Fields(d, where)
        classes, channels = f.list("classes"), f.int("channels", 1, 3)
        if not 2 <= len(classes) <= MAX_CLASSES or not all(isinstance(c, str) for c in classes):
            raise f.bad("classes", f"is not a list of 2 … {MAX_CLASSES} class names")
        if len(set(classes)) != len(classes):
            raise f.bad("classes", "names a class twice")
        stats = {}
        for key in ("mean", "std"):
            values = f.list(key)
            if len(values) != channels or not all(type(v) in (int, float) and 0 <= v <= 1 for v in values) or \
                    key == "std" and min(values) <= 0:
                raise f.bad(key, f"is not {channels} number(s) in {'(0, 1]' if key == 'std' else '[0, 1]'}")
            stats[key] = tuple(map(float, values))
        source = f.section("source", optional=True)
        if source is not None:
            for key in ("type", "name", "path"):
                source.str(key, optional=True)
            for split in HELD_OUT:
                held = source.section(split, optional=True)
                if held is not None:
                    held.number("fraction", 0, 1), held.int("count", 0, MAX_IMAGES), held.str("sha256")
        return cls(name=f.str("name"), classes=tuple(classes), channels=channels,
                   image_size=f.int("image_size", 1, MAX_IMAGE_SIZE), source=dict(d.get("source") or {}), **stats)

    def same_classes(self, other: "DatasetSpec") -> bool:
        return (self.classes, self.channels, self.image_size) == (other.classes, other.channels, other.image_size)

    def same_validation(self, other: "DatasetSpec") -> bool:
        """Whether both hold out the same validation images, or neither holds any out: artifacts combined in
        one chain must, or its validation split would hold images one of them was made from."""
        return self.source.get("validation") == other.source.get("validation")


def same_source(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two specs' sources name the same data (folder, Hub dataset, config and columns), whatever
    images it holds now."""
    def identity(source: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in source.items() if k not in (*HELD_OUT, "files")}

    return identity(a) == identity(b)
