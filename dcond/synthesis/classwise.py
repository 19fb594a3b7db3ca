"""classwise: the synthesis of "Are Large-scale Soft Labels Necessary for Large-scale Dataset Distillation?"
(Xiao & He, 2024). Each batch holds one class's images, matched to that class's BN statistics (stored in
the teacher artifact), which makes the images of a class more diverse."""

import torch

from dcond.synthesis import SYNTHESIZERS, Observer, Stats, SynthContext, layer_weights, stat_gap
from dcond.synthesis.sre2l import noise
from dcond.units import Unit


def class_gap(ctx: SynthContext, observer: Observer, stats: list[Stats], c: int) -> torch.Tensor:
    weights = layer_weights(len(stats), ctx.settings["first_bn_weight"])
    targets = observer.class_stats
    return sum(w * stat_gap(s, (targets[i][0][c], targets[i][1][c])) for i, (w, s) in enumerate(zip(weights, stats)))


@SYNTHESIZERS.register("classwise")
class ClassWise:
    mix_classes = False
    real_init = False
    needs_class_stats = True
    defaults = {"lr": 0.25, "r_bn": 0.01, "crop_scale": (0.08, 1.0), "jitter_fraction": 32 / 224}

    init = staticmethod(noise)

    def stat_loss(self, ctx: SynthContext, observer: Observer, stats: list[Stats], unit: Unit,
                  state: dict) -> torch.Tensor:
        return class_gap(ctx, observer, stats, unit.classes[0])
