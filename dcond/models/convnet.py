"""The ConvNet of the dataset-distillation literature: depth × [3×3 conv, norm, ReLU, 2×2 average pool], linear."""

from torch import nn

from dcond.errors import DcondError
from dcond.models.registry import MODELS

NORMS = ("batch", "instance", "group", "none")


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":  # the default: statistic-matching synthesis needs BatchNorm layers
        return nn.BatchNorm2d(width)
    if kind == "instance":  # as in DC/DSA: one group per channel, with affine parameters
        return nn.GroupNorm(width, width)
    if kind == "group":
        return nn.GroupNorm(4, width)
    return nn.Identity()


@MODELS.register("convnet")
def convnet(in_chans: int, num_classes: int, image_size: int, depth: int = 3, width: int = 128,
            norm: str = "batch") -> nn.Module:
    if norm not in NORMS:
        raise DcondError(f"convnet norm '{norm}' is not one of {', '.join(NORMS)}")
    if norm == "group" and width % 4:
        raise DcondError("convnet with norm=group needs a width divisible by 4")
    if image_size >> depth < 1:
        raise DcondError(f"convnet depth {depth} is too deep for {image_size}×{image_size} images")
    layers, chans, size = [], in_chans, image_size
    for _ in range(depth):
        layers += [nn.Conv2d(chans, width, 3, padding=1), _norm(norm, width), nn.ReLU(inplace=True), nn.AvgPool2d(2)]
        chans, size = width, size // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * size * size, num_classes))
