"""quantize: store the float tensors the chain leaves (logits, top-k values, low-rank factors) as float16,
bfloat16, or int8 with one scale per row (`--dtype`).

int8: each row x (the last dimension) is stored as round(x / s), s = max|x| / 127 kept as float16 in a
companion tensor `<name>.scale`; the error is at most s / 2 per value. Without quantize, floats are stored
as float16.
"""

from typing import Any

import torch

from dcond.compression import METHODS, STORE, Method, Tensors

SCALE = ".scale"


class Quantize:
    def __init__(self, info: dict[str, Any], options: dict[str, Any]):
        self.dtype = options["dtype"]
        self.record = {"dtype": self.dtype}

    def __call__(self, tensors: Tensors) -> Tensors:
        return dict(part for name, x in tensors.items() for part in _stored(name, x, self.dtype))


class Float16:
    """What a chain without quantize stores: floats as float16, as relabel stores logits."""

    record: dict[str, Any] = {}

    def __call__(self, tensors: Tensors) -> Tensors:
        return {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}


def _stored(name: str, x: torch.Tensor, dtype: str) -> list[tuple[str, torch.Tensor]]:
    if not x.is_floating_point():
        return [(name, x)]
    if dtype != "int8":
        return [(name, x.to(getattr(torch, dtype)))]
    scale = (x.abs().amax(-1) / 127).half()
    divisor = torch.where(scale > 0, scale.float(), 1.0)  # a row of zeros stays zeros
    q = (x / divisor.unsqueeze(-1)).round().clamp(-127, 127)
    return [(name, q.to(torch.int8)), (name + SCALE, scale)]


def dequantize(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 tensors again (int8 ones times their row scales); integer tensors such as indices as they are."""
    out = {}
    for name, x in tensors.items():
        if name.endswith(SCALE):
            continue
        if name + SCALE in tensors:
            out[name] = x.float() * tensors[name + SCALE].float().unsqueeze(-1)
        else:
            out[name] = x.float() if x.is_floating_point() else x
    return out


METHODS.register("quantize")(Method(STORE, Quantize))
