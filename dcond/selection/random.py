"""random: IPC real images per class drawn uniformly, the baseline every paper reports."""

import torch

from dcond.selection import SELECTORS
from dcond.selection.context import SelectContext


@SELECTORS.register("random")
def select_random(ctx: SelectContext, c: int, pool: torch.Tensor, ipc: int, gen: torch.Generator) -> torch.Tensor:
    return pool[torch.randperm(len(pool), generator=gen)[:ipc]]
