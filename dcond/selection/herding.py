"""herding: greedily add the image that keeps the mean teacher feature of the chosen set closest to the
class mean (Welling, 2009; the selection baseline of dataset-condensation papers)."""

import torch

from dcond.selection import SELECTORS
from dcond.selection.context import SelectContext


@SELECTORS.register("herding")
def select_herding(ctx: SelectContext, c: int, pool: torch.Tensor, ipc: int, gen: torch.Generator) -> torch.Tensor:
    _, feats = ctx.logits_and_features(ctx.inputs(pool))
    feats = feats.double()
    target = feats.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(target)
    available = torch.ones(len(feats), dtype=torch.bool, device=feats.device)
    for t in range(1, min(ipc, len(pool)) + 1):
        gap = ((total + feats) / t - target).norm(dim=1)
        gap[~available] = float("inf")
        i = int(gap.argmin())
        chosen.append(i)
        total += feats[i]
        available[i] = False
    return pool[torch.tensor(chosen)]
