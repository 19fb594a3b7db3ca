"""classwise: the synthesis of "Are Large-scale Soft Labels Necessary for Large-scale Dataset Distillation?"
(Xiao & He, 2024). Each batch holds one class's images, matched to that class's BN statistics (stored in
the teacher artifact), which makes the images of a class more diverse."""

import torch

from dcond.synthesis import SYNTHESIZERS, sre2l
from dcond.synthesis.matching import Observer, SynthContext, bn_gap
from dcond.units import Unit

# he-y/soft-label-pruning-for-dataset-distillation 63eee18 (docs/official/lpld.md): ImageNet and Tiny-ImageNet
# scripts, one class per batch. It has no small-data script: there the method's one change (a batch per class,
# matched to that class's statistics) is applied to SRe2L's small-data recipe.
RECIPES = {"cifar10": sre2l.SMALL, "cifar100": sre2l.SMALL,
           "tiny-imagenet": sre2l.RECIPES["tiny-imagenet"] | {"r_bn": 0.05},
           "imagenet": sre2l.RECIPES["imagenet"] | {"batch": None}}  # None: the class's whole IPC at once


@SYNTHESIZERS.register("classwise")
class ClassWise:
    batching = "per-class"
    needs_bn = True
    real_init = False
    needs_class_stats = True
    recipes = RECIPES  # "batch": a unit is min(batch, IPC) images of one class (the whole IPC for None)

    init = staticmethod(sre2l.noise)

    def stat_loss(self, ctx: SynthContext, observer: Observer, inputs: list[torch.Tensor], unit: Unit,
                  state: dict) -> torch.Tensor:
        labels = unit.labels.to(ctx.device)
        return bn_gap(ctx, observer, inputs, lambda i: observer.class_target(i, labels))
