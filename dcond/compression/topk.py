"""topk: keep the k largest teacher outputs of every view (FKD; the quantised follow-up of label pruning).

Stored per view: the k largest log-probabilities at the bank's temperature T, log softmax(z / T), and their
classes as int16. At train time the other K − k classes are filled back (`--fill`): `renormalize` gives the
kept classes all the mass and the others none (the follow-up's released training, its "MR"), `uniform`
spreads the remaining probability mass m = 1 − Σ kept evenly over them (FKD), `min` gives them the view's
smallest kept value (an option of the follow-up's code); the logits handed to the student are T · log p̂.
Renormalising from the stored log-probabilities equals renormalising softmax(top-k logits / T') at any T',
since their differences are those of the logits over T.

Bound: with uniform fill the kept classes keep their probabilities, so KL(p ‖ p̂) = m · KL(tail / m ‖
uniform) ≤ m · log(K − k) per view (plus the rounding of the stored values).
"""

import math
from typing import Any

import torch
import torch.nn.functional as F

from dcond.compression import CODE, CODINGS, METHODS, Method, Tensors, record
from dcond.errors import DcondError

_MIN_MASS = 1e-12  # a mass is floored before its log is taken (rounding can leave it ≤ 0; "none" stays finite)


class TopK:
    coding = "topk"

    def __init__(self, info: dict[str, Any], options: dict[str, Any]):
        self.k, self.fill, self.temperature = options["k"], options["fill"], info["temperature"]
        classes = info["num_classes"]
        if self.k >= classes:
            raise DcondError(f"--k {self.k} keeps every class; the bank has {classes}, so use --k {classes - 1} or "
                             "less")
        if classes > torch.iinfo(torch.int16).max:
            raise DcondError(f"topk stores class indices as int16; the bank has {classes} classes")

    def fit(self, kept, scratch) -> Tensors:
        return {}

    def encode(self, logits: torch.Tensor, order: torch.Tensor) -> Tensors:
        values, indices = F.log_softmax(logits / self.temperature, 1).topk(self.k, 1)
        return {"values": values, "indices": indices.to(torch.int16)}

    @property
    def record(self) -> dict[str, Any]:
        return {"k": self.k, "fill": self.fill}


@CODINGS.register("topk")
def decode(t: Tensors, info: dict[str, Any], rows: slice, order: torch.Tensor) -> torch.Tensor:
    values, indices = t["values"][rows].float(), t["indices"][rows].long()
    classes, k = info["num_classes"], values.shape[1]
    fill_rule = record(info, "topk")["fill"]
    if fill_rule == "renormalize":
        values = values - values.logsumexp(1, keepdim=True)
        fill = torch.full_like(values[:, :1], math.log(_MIN_MASS))
    elif fill_rule == "uniform":
        fill = ((1 - values.exp().sum(1, keepdim=True)).clamp_min(_MIN_MASS) / (classes - k)).log()
    else:
        fill = values.min(1, keepdim=True).values
    return fill.expand(len(values), classes).scatter(1, indices, values) * info["temperature"]


METHODS.register("topk")(Method(CODE, TopK))
