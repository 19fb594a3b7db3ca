"""Soft-label bank compression: methods that shrink a dense bank, chained in one call (`prune+lowrank`).

A chain runs in three phases, each method in its own: which batches are kept (`prune`), how their labels
are coded (`topk` or `lowrank`; plain logits otherwise), and how the remaining floats are stored
(`quantize`; float16 otherwise). METHODS maps a name to its phase and its `compress(work, options)`, which
changes a `Work` (dcond.compression.work) in place and returns what the manifest records about it. A
coding also registers a decoder in CODINGS, which turns the stored tensors back into logits at train time. A
new method is one module here plus its name in METHODS below.

The compressed bank's files and its reader are in `layout`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dcond.errors import DcondError
from dcond.registry import Registry

if TYPE_CHECKING:  # only named in types: this module stays light (see dcond.registry)
    import torch

    from dcond.compression.work import Work

PICK, CODE, STORE = range(3)  # the phases of a chain, in the order they run


@dataclass(frozen=True)
class Method:
    phase: int
    compress: Callable[["Work", dict[str, Any]], dict[str, Any]]


# decode(tensors as float32, bank section, rows of the stored views, the images they show) -> logits
Decoder = Callable[[dict[str, "torch.Tensor"], dict[str, Any], slice, "torch.Tensor"], "torch.Tensor"]

METHODS: Registry[Method] = Registry("label-compression method",
                                     {name: f"dcond.compression.{name}" for name in ("prune", "topk", "lowrank",
                                                                                     "quantize")})
CODINGS: Registry[Decoder] = Registry("label coding", {name: f"dcond.compression.{name}"
                                                       for name in ("topk", "lowrank")})
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
