"""A bank on its way through a compression chain."""

from dataclasses import dataclass, field
from typing import Any

import torch

from dcond.bank import BankBatch
from dcond.compression import batches_per_epoch


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


def batch_offsets(ids: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
    """Where each kept batch's views start and end in the stored rows (an epoch's last batch may be short)."""
    nb, size = batches_per_epoch(info), info["batch_size"]
    sizes = torch.where(ids % nb == nb - 1, info["num_images"] - (nb - 1) * size, size)
    return torch.cat([torch.zeros(1, dtype=torch.long), sizes.long().cumsum(0)])
