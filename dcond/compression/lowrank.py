"""lowrank: per-image low-rank labels, the idea of SCORE ("Soft label compression-centric dataset condensation
via coding rate").

The logits of one image over all its stored views form a matrix Z (views × classes) close to low rank. With
μ its mean row and Z − μ = U S Vᵀ, an image keeps μ, the first r rows of Vᵀ (its basis) and, per view, the r
coefficients U_r S_r; a view's logits are μ + coefficients · basis. The rank is `--rank R`, or per image the
smallest r whose singular values hold the share `--energy E` of Σ σ² (capped by `--rank` when both are given).

Bound (Eckart–Young): ‖(Z − μ) − U_r S_r V_rᵀ‖²_F = Σ_{j>r} σ_j², which `--energy E` keeps below
(1 − E) · ‖Z − μ‖²_F (plus the rounding of the stored factors).

The bank streams through once to gather each image's views: they are written image-major into a scratch file
(a view's slot is its image and epoch, as each epoch shows each image once), then read back a chunk of images
at a time (within `rows_in_memory`) and factored; the parts then store each view's coefficients,
(z − μ) · basisᵀ. Memory stays bounded and the bank is read once, whatever its epochs and images.

Stored: `mean` (images × K) and `basis` (images × r_max × K, zero past an image's rank), shared by every
part, and per part `coeffs` (r_max × views: one row per component, so int8 quantisation scales each
component once).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from dcond.bank import BankBatch
from dcond.compression import CODE, CODINGS, METHODS, Method, Tensors, batches_per_epoch, rows_in_memory


class LowRank:
    coding = "lowrank"

    def __init__(self, info: dict[str, Any], options: dict[str, Any]):
        self.rank, self.energy = options["rank"], options["energy"]
        self.images, self.classes, self.epochs = info["num_images"], info["num_classes"], info["epochs"]
        self.per_epoch = batches_per_epoch(info)
        self.chunk = max(1, rows_in_memory(info) // self.epochs)  # images read back and factored at once
        self.ranks: list[int] = []

    def fit(self, kept: Iterator[tuple[int, BankBatch]], scratch: Path) -> Tensors:
        self.mean = torch.zeros(self.images, self.classes)
        bases = [torch.zeros(0, self.classes)] * self.images
        path = scratch / "lowrank-views.f32"
        seen = self._gather(kept, path)
        with open(path, "rb") as f:
            for start in range(0, self.images, self.chunk):
                views = self._read(f, start, min(self.images, start + self.chunk))
                for j, z in enumerate(views):
                    i = start + j
                    if seen[i].any():
                        self.mean[i], bases[i] = factor(z[seen[i]], self.rank, self.energy)
                        self.ranks.append(len(bases[i]))
        path.unlink()
        width = max(len(b) for b in bases)
        self.basis = torch.stack([torch.cat([b, b.new_zeros(width - len(b), self.classes)]) for b in bases])
        return {"mean": self.mean, "basis": self.basis}

    def _gather(self, kept: Iterator[tuple[int, BankBatch]], path: Path) -> torch.Tensor:
        """Write every kept view's float32 logits at (its image, its epoch) of an image-major file; returns which
        slots hold a view (a pruned bank leaves some empty)."""
        seen = torch.zeros(self.images, self.epochs, dtype=torch.bool)
        row = 4 * self.classes
        with open(path, "wb") as f:
            f.truncate(self.images * self.epochs * row)
            for batch_id, batch in kept:
                epoch = batch_id // self.per_epoch
                for image, logits in zip(batch.views.order.tolist(), batch.logits.float().numpy()):
                    f.seek((image * self.epochs + epoch) * row)
                    f.write(logits.tobytes())
                    seen[image, epoch] = True
        return seen

    def _read(self, f, start: int, stop: int) -> torch.Tensor:
        """The logits slots of images `start` … `stop`: (images × epochs × K)."""
        f.seek(start * self.epochs * 4 * self.classes)
        data = bytearray(f.read((stop - start) * self.epochs * 4 * self.classes))
        return torch.frombuffer(data, dtype=torch.float32).view(stop - start, self.epochs, self.classes)

    def encode(self, logits: torch.Tensor, order: torch.Tensor) -> Tensors:
        return {"coeffs": torch.einsum("nk,nrk->rn", logits - self.mean[order], self.basis[order])}

    @property
    def record(self) -> dict[str, Any]:
        return {"rank": self.rank, "energy": self.energy, "mean_rank": sum(self.ranks) / max(1, len(self.ranks)),
                "max_rank": self.basis.shape[1]}


def factor(z: torch.Tensor, rank: int | None, energy: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, basis r × K) of one image's logits z (n × K); a view's coefficients are (z − μ) · basisᵀ."""
    mu = z.mean(0)
    _, s, vh = torch.linalg.svd((z - mu).double(), full_matrices=False)
    r = len(s) if rank is None else min(rank, len(s))
    if energy is not None:
        share = (s**2).cumsum(0) / (s**2).sum()
        r = min(r, int((share < energy - 1e-12).sum()) + 1) if s.any() else 0
    return mu, vh[:r].float()


@CODINGS.register("lowrank")
def decode(t: Tensors, info: dict[str, Any], rows: slice, order: torch.Tensor) -> torch.Tensor:
    return t["mean"][order] + torch.einsum("rn,nrk->nk", t["coeffs"][:, rows], t["basis"][order])


METHODS.register("lowrank")(Method(CODE, LowRank))
