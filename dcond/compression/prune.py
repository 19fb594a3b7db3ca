"""prune: keep a fraction of the stored batches, pooled across epochs (the label pruning of "Are Large-scale
Soft Labels Necessary for Large-scale Dataset Distillation?").

`--keep F` keeps ⌊F · batches⌋ of the bank's (epoch, batch) pairs, at least one: by default the
chronologically first full batches, as the released code does (he-y/soft-label-pruning-for-dataset-distillation
63eee18, docs/official/lpld.md: it relabels only the first ⌊(1 − r)·E·⌊N/B⌋⌋ pairs, dropping each epoch's
short last batch); `--pick random` draws them at random with the seed instead. The student still trains
every epoch: each epoch replays as many batches as an epoch holds, drawn uniformly with replacement from the
pool, from a seed per epoch, so a run is reproducible.
"""

from typing import Any

import torch

from dcond.compression import PICK, METHODS, Method, Pick, batches_per_epoch
from dcond.data.augment import epoch_generator


def pick(info: dict[str, Any], options: dict[str, Any]) -> Pick:
    """The kept batches, chosen from the bank's shape alone (before any label is read)."""
    nb = batches_per_epoch(info)
    total = info["epochs"] * nb
    if options["pick"] == "random":
        kept = max(1, round(options["keep"] * total))
        chosen = sorted(torch.randperm(total, generator=torch.Generator().manual_seed(options["seed"]))[:kept].tolist())
    else:
        full = [i for i in range(total) if info["num_images"] % info["batch_size"] == 0 or i % nb != nb - 1]
        full = full or list(range(total))  # every batch is short: keep from all of them
        chosen = full[: max(1, int(options["keep"] * len(full)))]
    return Pick(chosen, {"keep": options["keep"], "pick": options["pick"], "batches": len(chosen), "of": total,
                         "seed": options["seed"]})


def draw(pool: int, steps: int, seed: int, epoch: int) -> list[int]:
    """The pool positions that student epoch `epoch` replays."""
    return torch.randint(pool, (steps,), generator=epoch_generator(seed, epoch)).tolist()


METHODS.register("prune")(Method(PICK, pick))
