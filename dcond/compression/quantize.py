"""quantize: store the float tensors the chain leaves (logits, top-k values, low-rank factors) as float16,
bfloat16, or int8 or int4 with one scale per row (`--dtype`).

intN: each row x (the last dimension) is stored as round(x / s), s = max|x| / L (L = 127 for int8, 7 for
int4) kept as float16 in a companion tensor `<name>.scale`; the error is at most s / 2 per value. int4 values
are packed two to a byte as the nibbles v + 8 (1 … 15), a row of odd length padded with the nibble 0, which
no value takes. Without quantize, floats are stored as float16.
"""

from typing import Any

import torch

from dcond.compression import METHODS, STORE, Method, Tensors

SCALE = ".scale"
LEVELS = {"int8": 127, "int4": 7}  # the largest magnitude stored
PAD = 0  # the int4 nibble that fills out a row of odd length


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
    if dtype not in LEVELS:
        return [(name, x.to(getattr(torch, dtype)))]
    levels = LEVELS[dtype]
    scale = (x.abs().amax(-1) / levels).half()
    divisor = torch.where(scale > 0, scale.float(), 1.0)  # a row of zeros stays zeros
    q = (x / divisor.unsqueeze(-1)).round().clamp(-levels, levels)
    return [(name, q.to(torch.int8) if dtype == "int8" else _pack(q)), (name + SCALE, scale)]


def _pack(q: torch.Tensor) -> torch.Tensor:
    """int4 values (… × n, in −7 … 7) as uint8 (… × ⌈n/2⌉), two nibbles to a byte."""
    nibbles = (q + 8).to(torch.uint8)
    if nibbles.shape[-1] % 2:
        nibbles = torch.cat([nibbles, nibbles.new_full((*nibbles.shape[:-1], 1), PAD)], -1)
    return nibbles[..., 0::2] << 4 | nibbles[..., 1::2]


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    nibbles = torch.stack([packed >> 4, packed & 15], -1).flatten(-2)
    if nibbles.numel() and bool((nibbles[..., -1] == PAD).all()):
        nibbles = nibbles[..., :-1]
    return nibbles.float() - 8


def dequantize(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 tensors again (intN ones times their row scales; int4 is the packed uint8); integer tensors such
    as indices as they are."""
    out = {}
    for name, x in tensors.items():
        if name.endswith(SCALE):
            continue
        if name + SCALE in tensors:
            values = _unpack(x) if x.dtype == torch.uint8 else x.float()
            out[name] = values * tensors[name + SCALE].float().unsqueeze(-1)
        else:
            out[name] = x.float() if x.is_floating_point() else x
    return out


METHODS.register("quantize")(Method(STORE, Quantize))
