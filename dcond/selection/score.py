"""score: coding-rate selection after SCORE ("Soft label compression-centric dataset condensation via coding
rate"). The objective as implemented here is documented in docs/methods.md.

For each candidate image i of class c, the teacher's soft labels over A augmented views form Z_i (A × K).
With the coding rate R(M) = ½ logdet(I + α MᵀM), the chosen set S maximises

    F(S) = w_info Σ_{i∈S} p̄_i(c)  −  w_comp Σ_{i∈S} R_A(Z_i)  +  w_disc R_S([z̄_i]_{i∈S})

p̄_i(c): mean teacher probability of the true class (informativeness); R_A(Z_i) with α = K/(A ε²): how
far from low rank an image's soft labels are (compressibility: low is good); R_S over the mean soft labels
z̄_i of the chosen images with α = K/(IPC ε²): their spread (discriminativeness). The first two terms
are modular and R_S is monotone submodular, so F is submodular and lazy greedy applies.
"""

import heapq
import math

import torch

from dcond.data.augment import ViewConfig, crop_boxes, resize_crops
from dcond.selection import SELECTORS
from dcond.selection.context import SelectContext


def coding_rate(z: torch.Tensor, alpha: float) -> torch.Tensor:
    """½ logdet(I + α ZᵀZ) for Z (…, n, d), computed on the smaller of the two Gram matrices."""
    n, d = z.shape[-2:]
    gram = z.transpose(-1, -2) @ z if d <= n else z @ z.transpose(-1, -2)
    eye = torch.eye(min(n, d), dtype=z.dtype, device=z.device)
    return 0.5 * torch.logdet(eye + alpha * gram)


def lazy_greedy(modular: torch.Tensor, z: torch.Tensor, alpha: float, w_disc: float,
                k: int) -> tuple[list[int], list[float]]:
    """Maximise Σ modular[i] + w_disc·½ logdet(I + α Σ z_i z_iᵀ) over k items by lazy greedy.

    The gain of adding z to a set with M = I + α Σ z_j z_jᵀ is modular + w_disc·½ log(1 + α zᵀ M⁻¹ z), which
    only shrinks as the set grows; so a stale gain is an upper bound, and an item whose refreshed gain still
    tops the heap is the greedy choice. Returns the chosen indices and their gains, in order.
    """
    z = z.double()
    m_inv = torch.eye(z.shape[1], dtype=torch.float64)

    def gain(i: int) -> float:
        return float(modular[i]) + w_disc * 0.5 * math.log1p(alpha * float(z[i] @ m_inv @ z[i]))

    heap = [(-gain(i), i) for i in range(len(z))]
    heapq.heapify(heap)
    chosen, gains = [], []
    while len(chosen) < min(k, len(z)):
        _, i = heapq.heappop(heap)
        fresh = gain(i)
        if heap and fresh < -heap[0][0]:
            heapq.heappush(heap, (-fresh, i))  # stale: someone else may now be better
            continue
        chosen.append(i)
        gains.append(fresh)
        v = m_inv @ z[i]  # Sherman–Morrison update of M⁻¹ after adding α z zᵀ
        m_inv = m_inv - alpha * torch.outer(v, v) / (1 + alpha * float(z[i] @ v))
    return chosen, gains


@SELECTORS.register("score")
def select_score(ctx: SelectContext, c: int, pool: torch.Tensor, ipc: int, gen: torch.Generator) -> torch.Tensor:
    views, eps2 = ctx.options["score_views"], ctx.options["eps2"]
    w_info, w_disc, w_comp = ctx.options["score_weights"]
    pixels = pool.float()
    probs = []
    drawn = ViewConfig()  # the soft labels are taken on views drawn as `relabel` draws the bank's (before mixing)
    for _ in range(views):
        boxes = crop_boxes(len(pool), drawn.crop_scale, drawn.crop_ratio, gen)
        x = resize_crops(pixels, boxes, ctx.spec.image_size)
        x = torch.where(torch.rand(len(pool), generator=gen)[:, None, None, None] < drawn.flip, x.flip(3), x)
        logits, _ = ctx.logits_and_features(ctx.inputs(x.round().to(torch.uint8)))
        probs.append(logits.softmax(1).cpu())
    z = torch.stack(probs, 1).double()  # candidates × views × classes
    k = z.shape[2]
    informative = z[:, :, c].mean(1)
    incompressible = coding_rate(z, k / (views * eps2))
    chosen, _ = lazy_greedy(w_info * informative - w_comp * incompressible, z.mean(1), k / (ipc * eps2), w_disc, ipc)
    return pool[torch.tensor(chosen)]
