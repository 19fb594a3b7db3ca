"""MobileNet-V2 for small images, as in the CIFAR model zoo of the distillation literature (EDC's CIFAR observer
MobileNetV2 is its width 0.5): the second group keeps its stride 1 (16× reduction, not 32×), every block
expands with a 1×1 convolution (also at ratio 1), ReLU rather than ReLU6, channels not rounded to multiples of
8, no dropout before the classifier."""

from torch import nn

from dcond.models.registry import MODELS

GROUPS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1)]  # expansion ratio, channels at width 1, blocks, stride of the first


def _conv_bn_relu(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out), nn.ReLU(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, ratio: int):
        super().__init__()
        hidden = inp * ratio
        self.residual = stride == 1 and inp == out
        self.conv = nn.Sequential(
            _conv_bn_relu(inp, hidden, 1),
            _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


@MODELS.register("mobilenetv2-cifar")
def mobilenetv2_cifar(in_chans: int, num_classes: int, image_size: int, width: float = 0.5) -> nn.Module:
    chans = int(32 * width)
    layers = [_conv_bn_relu(in_chans, chans, 3, 2)]
    for ratio, base, blocks, stride in GROUPS:
        for i in range(blocks):
            layers.append(_InvertedResidual(chans, int(base * width), stride if i == 0 else 1, ratio))
            chans = int(base * width)
    last = int(1280 * width) if width > 1 else 1280
    model = nn.Sequential(*layers, _conv_bn_relu(chans, last, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes))
    for m in model.modules():  # the zoo's initialisation: He normal over the fan-out, N(0, 0.01) for the classifier
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    return model
