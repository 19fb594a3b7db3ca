"""edc: "Elucidating the Design Space of Dataset Condensation" (Shao et al., 2024).

Images start from real ones. At the input of every BatchNorm and Conv2d layer of the observer, the batch's
statistics (channel mean and variance; at Conv2d inputs also the mean and variance of every P×P patch
location) are matched softly to two targets, α·(gap to the whole training set's) + (1 − α)·(gap to the
statistics of the batch's classes), the first layer (the image itself) counting `first_bn_weight` times.
The batch statistics pass through an exponential moving average, kept per observer and layer, whose value
is compared while the gradient flows through the current batch: s̃ = m + s − sg(s) with
m ← β·m + (1 − β)·sg(s), m starting at 0 (as in the released code). Observers take turns, one per iteration.
"""

import torch

from dcond.data import to_input
from dcond.realstats import batch_stats, is_conv
from dcond.synthesis import SYNTHESIZERS
from dcond.synthesis.matching import Observer, SynthContext, gap
from dcond.units import Unit

# shaoshitong/EDC 80116a7 (docs/official/edc.md): recover.sh and recover.py of each branch. "batch": the images
# optimised together, taken class-major (the per-GPU share of the scripts' batch).
RECIPES = {
    "cifar10": {"lr": 0.05, "r_bn": 0.01, "iterations": 75, "crop_scale": (0.08, 1.0), "flip": 0.5,
                "jitter_fraction": 0.0, "batch": 10},
    "cifar100": {"lr": 0.05, "r_bn": 0.01, "iterations": 2000, "crop_scale": (0.5, 1.0), "flip": 0.5,
                 "jitter_fraction": 0.0, "batch": 25},
    "tiny-imagenet": {"lr": 0.05, "r_bn": 0.01, "iterations": 2000, "crop_scale": (0.5, 1.0), "flip": 0.5,
                      "jitter_fraction": 0.0, "batch": 25},
    "imagenet": {"lr": 0.05, "r_bn": 0.1, "iterations": 1000, "crop_scale": (0.5, 1.0), "flip": 0.5,
                 "jitter_fraction": 0.0, "batch": 20, "init": "rded"},
}


@SYNTHESIZERS.register("edc")
class EDC:
    batching = "class-major"
    needs_bn = False
    needs_class_stats = True
    real_init = True
    recipes = RECIPES

    def init(self, ctx: SynthContext, unit: Unit, gen: torch.Generator) -> torch.Tensor:
        return to_input(torch.cat([ctx.init_images[c][unit.start: unit.start + unit.count] for c in unit.classes]),
                        ctx.spec)

    def stat_loss(self, ctx: SynthContext, observer: Observer, inputs: list[torch.Tensor], unit: Unit,
                  state: dict) -> torch.Tensor:
        beta, alpha, first = ctx.settings["ema_momentum"], ctx.settings["alpha"], ctx.settings["first_bn_weight"]
        labels = unit.labels.to(ctx.device)
        loss = torch.zeros((), device=ctx.device)
        for i, (x, layer) in enumerate(zip(inputs, observer.layers)):
            stats = batch_stats(x, is_conv(layer), observer.patch)
            ema = state.setdefault((id(observer), i), [torch.zeros_like(s) for s in stats])
            matched = []
            for j, s in enumerate(stats):  # value: the moving average; gradient: the current batch's
                ema[j] = beta * ema[j] + (1 - beta) * s.detach()
                matched.append(ema[j] + s - s.detach())
            term = alpha * gap(matched, observer.global_target(i)) + \
                (1 - alpha) * gap(matched, observer.class_target(i, labels))
            loss = loss + (first if i == 0 else 1.0) * term
        return loss
