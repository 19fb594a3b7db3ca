"""Networks from timm (`timm:NAME` or a bare timm name) and torchvision (`tv:NAME`), built without weights."""

from collections.abc import Callable

import torch
from torch import nn

from dcond.errors import DcondError


def is_external(name: str) -> bool:
    if name.startswith(("timm:", "tv:")):
        return True
    import timm

    return timm.is_model(name)


def builder(name: str) -> Callable[..., nn.Module]:
    if name.startswith("tv:"):
        return lambda in_chans, num_classes, image_size, **options: _torchvision(name[3:], in_chans, num_classes,
                                                                                 options)
    return lambda in_chans, num_classes, image_size, **options: _timm(name.removeprefix("timm:"), in_chans,
                                                                      num_classes, image_size, options)


def _timm(name: str, in_chans: int, num_classes: int, image_size: int, options: dict) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise DcondError(f"unknown timm model '{name}'")
    kwargs = dict(pretrained=False, num_classes=num_classes, in_chans=in_chans) | options
    try:  # models with a fixed input grid (ViTs) need the image size; convolutional ones reject the keyword
        return timm.create_model(name, img_size=image_size, **kwargs)
    except TypeError:
        return timm.create_model(name, **kwargs)


class _ToRGB(nn.Module):
    """Feeds grayscale input to a torchvision network, which always expects three channels."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1))


def _torchvision(name: str, in_chans: int, num_classes: int, options: dict) -> nn.Module:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise DcondError(f"unknown torchvision classification model '{name}'")
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    return _ToRGB(net) if in_chans == 1 else net
