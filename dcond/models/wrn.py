"""Wide ResNet for small images (Zagoruyko and Komodakis): pre-activation basic blocks in three groups of widths
16k, 32k and 64k, as in the CIFAR model zoo of the distillation literature; WRN-16-2 is one of EDC's CIFAR
observers."""

from torch import nn

from dcond.errors import DcondError
from dcond.models.registry import MODELS


class _Block(nn.Module):
    """BN-ReLU-conv twice; where the width or stride changes, a 1×1 convolution of the activated input is the
    shortcut (so the first BN-ReLU is shared by both paths)."""

    def __init__(self, inp: int, out: int, stride: int):
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm2d(inp), nn.ReLU(inplace=True))
        self.body = nn.Sequential(nn.Conv2d(inp, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out),
                                  nn.ReLU(inplace=True), nn.Conv2d(out, out, 3, 1, 1, bias=False))
        self.shortcut = None if inp == out and stride == 1 else nn.Conv2d(inp, out, 1, stride, bias=False)

    def forward(self, x):
        activated = self.pre(x)
        if self.shortcut is None:
            return x + self.body(activated)
        return self.shortcut(activated) + self.body(activated)


@MODELS.register("wrn")
def wrn(in_chans: int, num_classes: int, image_size: int, depth: int = 16, widen: int = 2) -> nn.Module:
    if (depth - 4) % 6 or depth < 10:
        raise DcondError(f"wrn depth {depth} is not 6n + 4 (10, 16, 22, 28, 40, …)")
    per_group = (depth - 4) // 6
    layers, chans = [nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)], 16
    for group, width in enumerate((16 * widen, 32 * widen, 64 * widen)):
        for i in range(per_group):
            layers.append(_Block(chans, width, 2 if group and not i else 1))
            chans = width
    model = nn.Sequential(*layers, nn.BatchNorm2d(chans), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(chans, num_classes))
    for m in model.modules():  # the zoo's initialisation: He normal over the fan-out, zero linear bias
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model
