"""lowrank: per-image low-rank labels, the idea of SCORE ("Soft label compression-centric dataset condensation
via coding rate").

The logits of one image over all its stored views form a matrix Z (views × classes) close to low rank. With
μ its mean row and Z − μ = U S Vᵀ, an image keeps μ, the first r rows of Vᵀ (its basis) and, per view, the r
coefficients U_r S_r; a view's logits are μ + coefficients · basis. The rank is `--rank R`, or per image the
smallest r whose singular values hold the share `--energy E` of Σ σ² (capped by `--rank` when both are given).

Bound (Eckart–Young): ‖(Z − μ) − U_r S_r V_rᵀ‖²_F = Σ_{j>r} σ_j², which `--energy E` keeps below
(1 − E) · ‖Z − μ‖²_F (plus the rounding of the stored factors).

The bank streams through twice: first each image's views, a chunk of images at a time (one pass each, the
chunk's logits within `rows_in_memory`, each image being shown once an epoch), to factor them; then each
part's coefficients, (z − μ) · basisᵀ.

Stored: `mean` (images × K) and `basis` (images × r_max × K, zero past an image's rank), shared by every
part, and per part `coeffs` (r_max × views: one row per component, so int8 quantisation scales each
component once).
"""

from collections.abc import Iterator
from typing import Any

import torch

from dcond.bank import BankBatch
from dcond.compression import CODE, CODINGS, METHODS, Method, Tensors, rows_in_memory

class LowRank:
    coding = "lowrank"

    def __init__(self, info: dict[str, Any], options: dict[str, Any]):
        self.rank, self.energy = options["rank"], options["energy"]
        self.images, self.classes = info["num_images"], info["num_classes"]
        self.chunk = max(1, rows_in_memory(info) // info["epochs"])  # images factored in one pass
        self.ranks: list[int] = []

    def fit(self, kept) -> Tensors:
        self.mean = torch.zeros(self.images, self.classes)
        bases = [torch.zeros(0, self.classes)] * self.images
        for start in range(0, self.images, self.chunk):
            for i, z in self._views(kept(), start, min(self.images, start + self.chunk)):
                self.mean[i], _, bases[i] = factor(z, self.rank, self.energy)
                self.ranks.append(len(bases[i]))
        width = max(len(b) for b in bases)
        self.basis = torch.stack([torch.cat([b, b.new_zeros(width - len(b), self.classes)]) for b in bases])
        return {"mean": self.mean, "basis": self.basis}

    @staticmethod
    def _views(batches, start: int, stop: int) -> Iterator[tuple[int, torch.Tensor]]:
        """Each image of `start` … `stop` that has kept views, with their logits (views × K)."""
        images, logits = [], []
        for batch in batches:
            mine = (batch.views.order >= start) & (batch.views.order < stop)
            images.append(batch.views.order[mine].long())
            logits.append(batch.logits[mine])
        images, logits = torch.cat(images), torch.cat(logits)
        for i in images.unique().tolist():
            yield i, logits[images == i]

    def encode(self, batches: list[BankBatch]) -> Tensors:
        logits, order = torch.cat([b.logits for b in batches]), torch.cat([b.views.order for b in batches]).long()
        return {"coeffs": torch.einsum("nk,nrk->rn", logits - self.mean[order], self.basis[order])}

    @property
    def record(self) -> dict[str, Any]:
        return {"rank": self.rank, "energy": self.energy, "mean_rank": sum(self.ranks) / max(1, len(self.ranks)),
                "max_rank": self.basis.shape[1]}


def factor(z: torch.Tensor, rank: int | None, energy: float | None) -> tuple[torch.Tensor, torch.Tensor,
                                                                              torch.Tensor]:
    """(μ, coefficients n × r, basis r × K) of one image's logits z (n × K)."""
    mu = z.mean(0)
    u, s, vh = torch.linalg.svd((z - mu).double(), full_matrices=False)
    r = len(s) if rank is None else min(rank, len(s))
    if energy is not None:
        share = (s**2).cumsum(0) / (s**2).sum()
        r = min(r, int((share < energy - 1e-12).sum()) + 1) if s.any() else 0
    return mu, (u[:, :r] * s[:r]).float(), vh[:r].float()


@CODINGS.register("lowrank")
def decode(t: Tensors, info: dict[str, Any], rows: slice, order: torch.Tensor) -> torch.Tensor:
    return t["mean"][order] + torch.einsum("rn,nrk->nk", t["coeffs"][:, rows], t["basis"][order])


METHODS.register("lowrank")(Method(CODE, LowRank))
