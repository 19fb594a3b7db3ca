"""The coding of a chain without topk or lowrank: each view's logits as they are (then quantised or stored as
float16)."""

from typing import Any

import torch

from dcond.compression import CODINGS, Tensors


class Logits:
    coding = "logits"
    record: dict[str, Any] = {}

    def fit(self, kept, scratch) -> Tensors:
        return {}

    def encode(self, logits: torch.Tensor, order: torch.Tensor) -> Tensors:
        return {"logits": logits}


CODINGS.register("logits")(lambda t, info, rows, order: t["logits"][rows])
