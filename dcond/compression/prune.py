"""prune: keep a random fraction of the stored batches, pooled across epochs (the label pruning of "Are
Large-scale Soft Labels Necessary for Large-scale Dataset Distillation?").

`--keep F` keeps round(F · batches) of the bank's (epoch, batch) pairs, at least one. The student still
trains every epoch: each epoch replays as many batches as an epoch holds, drawn uniformly with replacement
from the pool, from a seed per epoch, so a run is reproducible.
"""

from typing import Any

import torch

from dcond.compression import PICK, METHODS, Method, Work
from dcond.data.augment import epoch_generator


def prune(work: Work, options: dict[str, Any]) -> dict[str, Any]:
    total = len(work.ids)
    kept = max(1, round(options["keep"] * total))
    chosen = torch.randperm(total, generator=torch.Generator().manual_seed(options["seed"]))[:kept]
    work.keep(sorted(chosen.tolist()))
    return {"keep": options["keep"], "batches": kept, "of": total, "seed": options["seed"]}


def draw(pool: int, steps: int, seed: int, epoch: int) -> list[int]:
    """The pool positions that student epoch `epoch` replays."""
    return torch.randint(pool, (steps,), generator=epoch_generator(seed, epoch)).tolist()


METHODS.register("prune")(Method(PICK, prune))
