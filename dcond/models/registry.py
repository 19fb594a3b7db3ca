"""One registry resolves a model name to a network for given channels, classes and image size."""

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from dcond.errors import DcondError
from dcond.registry import Registry
from dcond.validate import MAX_CLASSES, MAX_IMAGE_SIZE, Fields

MODELS: Registry = Registry("model")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network: stored in every model artifact."""

    name: str
    in_chans: int
    num_classes: int
    image_size: int
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "spec") -> "ModelSpec":
        f = Fields(d, where)
        f.section("options")
        return cls(f.str("name"), f.int("in_chans", 1, 3), f.int("num_classes", 2, MAX_CLASSES),
                   f.int("image_size", 1, MAX_IMAGE_SIZE), dict(d["options"]))


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`["width=64", "norm=instance"]` -> {"width": 64, "norm": "instance"}; values are JSON where they parse."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DcondError(f"--model-opt '{pair}' is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def create_model(spec: ModelSpec, pretrained: bool = False) -> nn.Module:
    """The network `spec` describes; with `pretrained`, holding the weights torchvision or timm publish for it
    (a head for other classes new), which the spec alone does not rebuild: store them."""
    from dcond.models import external

    if spec.name in MODELS:
        if pretrained:
            raise DcondError(f"'{spec.name}' is dcond's own network, without published weights: --pretrained "
                             "needs tv:NAME (torchvision) or timm:NAME")
        build = MODELS.get(spec.name)
    elif external.is_external(spec.name):
        build = external.builder(spec.name, pretrained)
    else:
        raise DcondError(f"unknown model '{spec.name}' (known: {', '.join(MODELS.names())}; "
                         "or timm:NAME, a timm model name, or tv:NAME for torchvision)")
    try:
        return build(spec.in_chans, spec.num_classes, spec.image_size, **spec.options)
    except (TypeError, ValueError, RuntimeError, AssertionError) as e:  # how constructors refuse their arguments
        raise DcondError(f"model '{spec.name}' cannot be built with options {spec.options}: "
                         f"{' '.join(str(e).split())}") from None
