"""sre2l: "Squeeze, Recover and Relabel" (Yin et al., 2023). Images start from noise; every batch holds
images of all classes; every BN layer's batch statistics are matched to its running statistics."""

import torch

from dcond.synthesis import SYNTHESIZERS
from dcond.synthesis.matching import Observer, SynthContext, bn_gap
from dcond.units import Unit


def noise(ctx: SynthContext, unit: Unit, gen: torch.Generator) -> torch.Tensor:
    spec = ctx.spec
    return torch.randn(len(unit.labels), spec.channels, spec.image_size, spec.image_size, generator=gen)


# VILA-Lab/SRe2L 8d00cba (docs/official/sre2l.md): its small-data recover script (written for CIFAR-100) rolls
# by up to 4 of 32 pixels and neither crops nor flips; Tiny-ImageNet and ImageNet crop (0.08-1) and flip.
# Batches of 100 images, one per class (here: as many per class as make about 100).
SMALL = {"lr": 0.25, "r_bn": 0.01, "iterations": 1000, "crop_scale": None, "flip": 0.0, "jitter_fraction": 4 / 32,
         "batch": 100}
RECIPES = {"cifar10": SMALL, "cifar100": SMALL,
           "tiny-imagenet": {"lr": 0.1, "r_bn": 1.0, "iterations": 4000, "crop_scale": (0.08, 1.0), "flip": 0.5,
                             "jitter_fraction": 4 / 64, "signed_roll": True, "batch": 100},
           "imagenet": {"lr": 0.25, "r_bn": 0.01, "iterations": 4000, "crop_scale": (0.08, 1.0), "flip": 0.5,
                        "jitter_fraction": 32 / 224, "batch": 100}}


@SYNTHESIZERS.register("sre2l")
class SRe2L:
    batching = "mixed"
    needs_bn = True
    real_init = False
    needs_class_stats = False
    recipes = RECIPES

    init = staticmethod(noise)

    def stat_loss(self, ctx: SynthContext, observer: Observer, inputs: list[torch.Tensor], unit: Unit,
                  state: dict) -> torch.Tensor:
        return bn_gap(ctx, observer, inputs, observer.global_target)
