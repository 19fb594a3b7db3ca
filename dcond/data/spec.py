"""The dataset spec every artifact carries: which classes, in which order, and how pixels are scaled."""

from dataclasses import asdict, dataclass, field
from typing import Any

from dcond.errors import DcondError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    channels: int
    image_size: int  # side of the square images, in pixels
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # where the data came from, so later stages can find it again: {"type": "builtin"|"imagefolder"|"artifact", ...}
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
    def from_dict(cls, d: dict[str, Any]) -> "DatasetSpec":
        try:
            return cls(name=str(d["name"]), classes=tuple(map(str, d["classes"])), channels=int(d["channels"]),
                       image_size=int(d["image_size"]), mean=tuple(map(float, d["mean"])),
                       std=tuple(map(float, d["std"])), source=dict(d.get("source", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise DcondError(f"malformed dataset spec: {e!r}") from None

    def same_classes(self, other: "DatasetSpec") -> bool:
        return (self.classes, self.channels, self.image_size) == (other.classes, other.channels, other.image_size)
