"""sre2l: "Squeeze, Recover and Relabel" (Yin et al., 2023). Images start from noise; every batch holds
images of all classes; every BN layer's batch statistics are matched to its running statistics."""

import torch

from dcond.synthesis import SYNTHESIZERS, Observer, Stats, SynthContext, matched_gap
from dcond.units import Unit


def noise(ctx: SynthContext, unit: Unit, gen: torch.Generator) -> torch.Tensor:
    spec = ctx.spec
    return torch.randn(len(unit.labels), spec.channels, spec.image_size, spec.image_size, generator=gen)


@SYNTHESIZERS.register("sre2l")
class SRe2L:
    mix_classes = True
    real_init = False
    needs_class_stats = False
    # ImageNet: lr 0.25, r_bn 0.01, crops of 8-100%, jitter 32 px of 224; the jitter is scaled to the image
    defaults = {"lr": 0.25, "r_bn": 0.01, "crop_scale": (0.08, 1.0), "jitter_fraction": 32 / 224}

    init = staticmethod(noise)

    def stat_loss(self, ctx: SynthContext, observer: Observer, stats: list[Stats], unit: Unit,
                  state: dict) -> torch.Tensor:
        return matched_gap(ctx, stats, observer.running)
