"""ShuffleNet-V2 for small images: torchvision's network with a 1×1 stride-1 stem and no max-pool, the form of the
CIFAR model zoo of the distillation literature (EDC's CIFAR observer ShuffleNetV2_0_5 is width 0.5)."""

from torch import nn

from dcond.errors import DcondError
from dcond.models.registry import MODELS

# width -> the channels of the stem, the three stages and the last 1×1 convolution (ShuffleNet-V2's table 5)
CHANNELS = {0.5: [24, 48, 96, 192, 1024], 1.0: [24, 116, 232, 464, 1024], 1.5: [24, 176, 352, 704, 1024],
            2.0: [24, 244, 488, 976, 2048]}


@MODELS.register("shufflenetv2-cifar")
def shufflenetv2_cifar(in_chans: int, num_classes: int, image_size: int, width: float = 0.5) -> nn.Module:
    from torchvision.models import ShuffleNetV2

    if width not in CHANNELS:
        raise DcondError(f"shufflenetv2-cifar width {width} is not one of {', '.join(map(str, CHANNELS))}")
    model = ShuffleNetV2([4, 8, 4], CHANNELS[width], num_classes=num_classes)
    model.conv1 = nn.Sequential(nn.Conv2d(in_chans, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
    model.maxpool = nn.Identity()
    return model
