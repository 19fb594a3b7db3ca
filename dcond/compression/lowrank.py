"""lowrank: per-image low-rank labels, the idea of SCORE ("Soft label compression-centric dataset condensation
via coding rate").

The logits of one image over all its stored views form a matrix Z (views × classes) close to low rank. With
μ its mean row and Z − μ = U S Vᵀ, an image keeps μ, the first r rows of Vᵀ (its basis) and, per view, the r
coefficients U_r S_r; a view's logits are μ + coefficients · basis. The rank is `--rank R`, or per image the
smallest r whose singular values hold the share `--energy E` of Σ σ² (capped by `--rank` when both are given).

Bound (Eckart–Young): ‖(Z − μ) − U_r S_r V_rᵀ‖²_F = Σ_{j>r} σ_j², which `--energy E` keeps below
(1 − E) · ‖Z − μ‖²_F (plus the rounding of the stored factors).

Stored: `mean` (images × K), `basis` (images × r_max × K, zero past an image's rank) and `coeffs`
(r_max × views: one row per component, so int8 quantisation scales each component once).
"""

from typing import Any

import torch

from dcond.compression import CODE, CODINGS, METHODS, Method
from dcond.compression.work import Work


def compress(work: Work, options: dict[str, Any]) -> dict[str, Any]:
    logits, order = work.logits, work.order
    images, classes = work.info["num_images"], work.info["num_classes"]
    factors = {i: factor(logits[order == i], options["rank"], options["energy"]) for i in order.unique().tolist()}
    width = max(len(basis) for _, _, basis in factors.values())
    mean, basis = torch.zeros(images, classes), torch.zeros(images, width, classes)
    coeffs = torch.zeros(width, len(order))
    for i, (mu, c, v) in factors.items():
        mean[i], basis[i, : len(v)] = mu, v
        coeffs[: len(v), order == i] = c.T
    work.coding, work.tensors = "lowrank", {"mean": mean, "basis": basis, "coeffs": coeffs}
    ranks = [len(v) for _, _, v in factors.values()]
    return {"rank": options["rank"], "energy": options["energy"], "mean_rank": sum(ranks) / len(ranks),
            "max_rank": width}


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
def decode(t: dict[str, torch.Tensor], info: dict[str, Any], rows: slice, order: torch.Tensor) -> torch.Tensor:
    return t["mean"][order] + torch.einsum("rn,nrk->nk", t["coeffs"][:, rows], t["basis"][order])


METHODS.register("lowrank")(Method(CODE, compress))
