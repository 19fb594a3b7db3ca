"""The coding of a chain without topk or lowrank: each view's logits as they are (then quantised or stored as
float16)."""

from typing import Any

import torch

from dcond.bank import BankBatch
from dcond.compression import CODINGS, Tensors


class Logits:
    coding = "logits"
    record: dict[str, Any] = {}

    def fit(self, kept, scratch) -> Tensors:
        return {}

    def encode(self, batches: list[BankBatch]) -> Tensors:
        return {"logits": torch.cat([b.logits for b in batches])}


CODINGS.register("logits")(lambda t, info, rows, order: t["logits"][rows])
