"""classwise: the synthesis of "Are Large-scale Soft Labels Necessary for Large-scale Dataset Distillation?"
(Xiao & He, 2024). Each batch holds one class's images, matched to that class's BN statistics (stored in
the teacher artifact), which makes the images of a class more diverse."""

import torch

from dcond.synthesis import SYNTHESIZERS, Observer, Stats, SynthContext, matched_gap
from dcond.synthesis.sre2l import noise
from dcond.units import Unit


@SYNTHESIZERS.register("classwise")
class ClassWise:
    mix_classes = False
    real_init = False
    needs_class_stats = True
    defaults = {"lr": 0.25, "r_bn": 0.01, "crop_scale": (0.08, 1.0), "jitter_fraction": 32 / 224}

    init = staticmethod(noise)

    def stat_loss(self, ctx: SynthContext, observer: Observer, stats: list[Stats], unit: Unit,
                  state: dict) -> torch.Tensor:
        return matched_gap(ctx, stats, observer.of_class(unit.classes[0]))
