"""edc: "Elucidating the Design Space of Dataset Condensation" (Shao et al., 2024).

Soft category-aware matching: α·(gap to the global BN statistics) + (1 − α)·(gap to the class's
statistics), with the synthetic statistics tracked by an exponential moving average across iterations;
images start from real ones; weak crops (50-100% of the image); several observers cycled per iteration.
"""

import torch

from dcond.data import to_input
from dcond.synthesis import SYNTHESIZERS, Observer, Stats, SynthContext, matched_gap
from dcond.units import Unit


@SYNTHESIZERS.register("edc")
class EDC:
    mix_classes = False
    needs_class_stats = True
    real_init = True
    defaults = {"lr": 0.05, "r_bn": 0.1, "crop_scale": (0.5, 1.0), "jitter_fraction": 0.0}

    def init(self, ctx: SynthContext, unit: Unit, gen: torch.Generator) -> torch.Tensor:
        (c,) = unit.classes
        return to_input(ctx.init_images[c][unit.start: unit.start + unit.count], ctx.spec)

    def stat_loss(self, ctx: SynthContext, observer: Observer, stats: list[Stats], unit: Unit,
                  state: dict) -> torch.Tensor:
        momentum, alpha = ctx.settings["ema_momentum"], ctx.settings["alpha"]
        key = id(observer)  # each observer keeps its own running synthetic statistics
        previous = state.get(key)
        if previous is not None:
            stats = [(momentum * pm.detach() + (1 - momentum) * m, momentum * pv.detach() + (1 - momentum) * v)
                     for (m, v), (pm, pv) in zip(stats, previous)]
        state[key] = stats
        return alpha * matched_gap(ctx, stats, observer.running) + \
            (1 - alpha) * matched_gap(ctx, stats, observer.of_class(unit.classes[0]))
