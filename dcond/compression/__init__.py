"""Soft-label bank compression: methods that shrink a dense bank, chained in one call (`prune+lowrank`).

A chain runs in three phases, each method in its own: which batches are kept (`prune`), how their labels
are coded (`topk` or `lowrank`; plain logits otherwise), and how the remaining floats are stored
(`quantize`; float16 otherwise). The bank streams through the chain: its kept batches are coded and written
a part at a time (`layout`), so memory does not grow with the bank's epochs.

METHODS maps a name to its phase and `make(info, options)`, which builds that phase's step from the source
bank's manifest section and the stage's options: a `Pick` (the kept batches), a `Coder` or a `Store`. A
coding also registers a decoder in CODINGS, which turns the stored tensors back into logits at train time.
A new method is one module here plus its name in METHODS below.

The compressed bank's files and its reader are in `layout`.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dcond.errors import DcondError
from dcond.registry import Registry

if TYPE_CHECKING:  # only named in types: this module stays light (see dcond.registry)
    import torch

    from dcond.bank import BankBatch

PICK, CODE, STORE = range(3)  # the phases of a chain, in the order they run
MEMORY_BYTES = 16 << 20  # the float32 logits compress-labels holds at once (a part; lowrank: a chunk of images)
Tensors = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class Pick:
    ids: list[int]  # the kept batches, as epoch · batches_per_epoch(info) + batch, ascending
    record: dict[str, Any]  # what the manifest records about the step


class Coder(Protocol):
    coding: str  # the name of its decoder in CODINGS
    record: dict[str, Any]  # what the manifest records about the step (after `fit`)

    def fit(self, kept: Iterator[tuple[int, "BankBatch"]], scratch: Path) -> Tensors:
        """The tensors every part shares (per image), from a pass over the kept batches (with their ids); `scratch`
        is a folder for what does not fit in memory."""

    def encode(self, logits: "torch.Tensor", order: "torch.Tensor") -> Tensors:
        """The tensors of one part: the labels of its views (float32 logits, and the images they show), in order."""


class Store(Protocol):
    record: dict[str, Any]

    def __call__(self, tensors: Tensors) -> Tensors:
        """The tensors as they are written."""


@dataclass(frozen=True)
class Method:
    phase: int
    make: Callable[[dict[str, Any], dict[str, Any]], Any]  # (bank section, options) -> Pick | Coder | Store


# decode(tensors as float32: a part's and the shared ones, bank section, rows of the part's views, the images
# they show) -> logits
Decoder = Callable[[Tensors, dict[str, Any], slice, "torch.Tensor"], "torch.Tensor"]

METHODS: Registry[Method] = Registry("label-compression method",
                                     {name: f"dcond.compression.{name}" for name in ("prune", "topk", "lowrank",
                                                                                     "quantize")})
CODINGS: Registry[Decoder] = Registry("label coding", {name: f"dcond.compression.{name}"
                                                       for name in ("logits", "topk", "lowrank")})


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


def rows_in_memory(info: dict[str, Any]) -> int:
    """How many views' float32 logits MEMORY_BYTES holds (at least one): what bounds compress-labels' memory
    whatever the number of epochs."""
    return max(1, MEMORY_BYTES // (4 * info["num_classes"]))


def batch_rows(batch_id: int, info: dict[str, Any]) -> int:
    """How many views a batch holds (an epoch's last batch may be short)."""
    nb, size = batches_per_epoch(info), info["batch_size"]
    return info["num_images"] - (nb - 1) * size if batch_id % nb == nb - 1 else size
