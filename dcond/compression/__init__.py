"""Soft-label bank compression: methods that shrink a dense bank, chained in one call (`prune+lowrank`).

A chain runs in three phases, each method in its own: which batches are kept (`prune`), how their labels
are coded (`topk` or `lowrank`; plain logits otherwise), and how the remaining floats are stored
(`quantize`; float16 otherwise). METHODS maps a name to its phase and its `compress(work, options)`, which
changes a `Work` in place and returns what the manifest records about it. A coding also registers a
decoder in CODINGS, which turns the stored tensors back into logits at train time. A new method is one
module here plus its import below.

The compressed bank's files and its reader are in `layout`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dcond.bank import BankBatch
from dcond.errors import DcondError
from dcond.registry import Registry

PICK, CODE, STORE = range(3)  # the phases of a chain, in the order they run


@dataclass
class Work:
    """A bank on its way through a chain, in memory: the kept batches with their views and original logits
    (float32), and the tensors that will be stored for their labels."""

    info: dict[str, Any]  # the source bank's manifest section
    ids: list[int]  # the kept batches, as epoch · batches_per_epoch(info) + batch, ascending
    batches: list[BankBatch]
    coding: str = "logits"
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tensors = self.tensors or {"logits": self.logits}

    @property
    def logits(self) -> torch.Tensor:
        return torch.cat([b.logits for b in self.batches])

    @property
    def order(self) -> torch.Tensor:
        """The image each kept view shows."""
        return torch.cat([b.views.order for b in self.batches])

    def keep(self, positions: list[int]) -> None:
        """Keep only the batches at these positions (before the labels are coded)."""
        self.ids = [self.ids[p] for p in positions]
        self.batches = [self.batches[p] for p in positions]
        self.tensors = {"logits": self.logits}

    def finish(self) -> None:
        """Floats no method quantised are stored as float16, as relabel stores logits."""
        self.tensors = {k: v.half() if v.dtype == torch.float32 else v for k, v in self.tensors.items()}


@dataclass(frozen=True)
class Method:
    phase: int
    compress: Callable[[Work, dict[str, Any]], dict[str, Any]]


# decode(tensors as float32, bank section, rows of the stored views, the images they show) -> logits
Decoder = Callable[[dict[str, torch.Tensor], dict[str, Any], slice, torch.Tensor], torch.Tensor]

METHODS: Registry[Method] = Registry("label-compression method")
CODINGS: Registry[Decoder] = Registry("label coding")
CODINGS.register("logits")(lambda t, info, rows, order: t["logits"][rows])


def parse_chain(spec: str) -> list[str]:
    """`prune+lowrank+quantize` -> its method names, checked: known, each phase at most once, in phase order."""
    names = spec.split("+")
    phases = [METHODS.get(name).phase for name in names]
    if phases != sorted(set(phases)):
        kinds = ["|".join(n for n in METHODS.names() if METHODS.get(n).phase == p) for p in (PICK, CODE, STORE)]
        order = ", ".join(kinds)
        raise DcondError(f"--method {spec}: a chain takes at most one method of each kind, in the order {order}")
    return names


def record(info: dict[str, Any], method: str) -> dict[str, Any]:
    """What the manifest records about one method of the chain that made a compressed bank."""
    return next(step for step in info["chain"] if step["method"] == method)


def batches_per_epoch(info: dict[str, Any]) -> int:
    return -(-info["num_images"] // info["batch_size"])


def batch_offsets(ids: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
    """Where each kept batch's views start and end in the stored rows (an epoch's last batch may be short)."""
    nb, size = batches_per_epoch(info), info["batch_size"]
    sizes = torch.where(ids % nb == nb - 1, info["num_images"] - (nb - 1) * size, size)
    return torch.cat([torch.zeros(1, dtype=torch.long), sizes.long().cumsum(0)])


from dcond.compression import layout, lowrank, prune, quantize, topk  # noqa: E402,F401  (register the methods)
