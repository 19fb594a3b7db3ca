"""Checks on what an artifact says before it is trusted, each failing as one DcondError that names the field.

A manifest is JSON anyone can edit (and re-seal); its tensors are files anyone can rewrite. Every number
that sizes an allocation, indexes a tensor or divides is read through these checks, so damage becomes a
message naming `where.field`, never an internal exception, a wrong number or an out-of-memory.
"""

import math
from typing import TYPE_CHECKING, Any

from dcond.errors import DcondError

if TYPE_CHECKING:  # only named in types: the CLI reads the bounds below without loading torch
    import torch

# bounds generous enough for ImageNet-21k at high resolution, small enough that nothing they size can exhaust memory
MAX_CLASSES = 100_000
MAX_IMAGE_SIZE = 4096
MAX_IMAGES = 100_000_000
MAX_EPOCHS = 1_000_000
MAX_SEED = 2**31 - 1  # seeds are combined with epoch and unit numbers into 64-bit generator seeds


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


class Fields:
    """A JSON object read from outside (a manifest section), read field by field with checks."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise DcondError(f"{where} is {_shown(data)}, not an object")
        self.data, self.where = data, where

    def bad(self, key: str, why: str) -> DcondError:
        return DcondError(f"{self.where}.{key} = {_shown(self.data.get(key))} {why}")

    def _get(self, key: str, optional: bool) -> Any:
        if key not in self.data and not optional:
            raise DcondError(f"{self.where}.{key} is missing")
        return self.data.get(key)

    def int(self, key: str, lo: int, hi: int, optional: bool = False) -> int | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if type(value) is not int:
            raise self.bad(key, "is not an integer")
        if not lo <= value <= hi:
            raise self.bad(key, f"is out of range ({lo} … {hi})")
        return value

    def number(self, key: str, lo: float, hi: float, above: bool = False, optional: bool = False) -> float | None:
        """A finite number in [lo, hi] (in (lo, hi] with `above`)."""
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if type(value) not in (int, float) or not math.isfinite(value):
            raise self.bad(key, "is not a finite number")
        if not (lo < value if above else lo <= value) or value > hi:
            raise self.bad(key, f"is out of range ({lo} {'<' if above else '≤'} x ≤ {hi})")
        return float(value)

    def str(self, key: str, choices: tuple[str, ...] | None = None, optional: bool = False) -> str | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.bad(key, "is not a string")
        if choices is not None and value not in choices:
            raise self.bad(key, f"is not one of {', '.join(choices)}")
        return value

    def list(self, key: str, optional: bool = False) -> list | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, list):
            raise self.bad(key, "is not a list")
        return value

    def section(self, key: str, optional: bool = False) -> "Fields | None":
        value = self._get(key, optional)
        if value is None and optional:
            return None
        return Fields(value, f"{self.where}.{key}")

    def equal(self, key: str, expected: Any, what: str) -> None:
        if self.data.get(key) != expected:
            raise self.bad(key, f"does not match {what} ({_shown(expected)})")


def tensor(tensors: dict[str, "torch.Tensor"], key: str, where: str, shape: tuple[int, ...] | None = None,
           lo: float | None = None, hi: float | None = None, integer: bool = False) -> "torch.Tensor":
    """tensors[key], checked: present, of the given shape, finite, within [lo, hi], integer-typed if asked."""
    if key not in tensors:
        raise DcondError(f"{where} holds no tensor '{key}'")
    t = tensors[key]
    if shape is not None and tuple(t.shape) != shape:
        raise DcondError(f"{where}: tensor '{key}' has shape {tuple(t.shape)}, expected {shape}")
    if integer and (t.is_floating_point() or t.is_complex()):
        raise DcondError(f"{where}: tensor '{key}' is {t.dtype}, expected integers")
    if t.numel() == 0:
        return t
    if t.is_floating_point() and not bool(t.isfinite().all()):
        raise DcondError(f"{where}: tensor '{key}' holds NaN or infinite values")
    if lo is not None and t.min().item() < lo or hi is not None and t.max().item() > hi:
        raise DcondError(f"{where}: tensor '{key}' holds values outside [{lo}, {hi}] "
                         f"(min {t.min().item():.6g}, max {t.max().item():.6g})")
    return t


def check_weights(state: dict[str, "torch.Tensor"], where: str) -> None:
    """Network weights: every floating tensor finite (a NaN weight evaluates to chance, silently), and
    BatchNorm's running variances not negative."""
    for key in state:
        tensor(state, key, where, lo=0 if key.endswith("running_var") else None)
