"""ResNet-18 for small images: a 3×3 stride-1 stem and no max-pool, as used on CIFAR by SRe2L, RDED and EDC."""

from torch import nn

from dcond.models.registry import MODELS


@MODELS.register("resnet18-cifar")
def resnet18_cifar(in_chans: int, num_classes: int, image_size: int) -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
