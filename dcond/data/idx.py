"""The IDX file format of MNIST and Fashion-MNIST, gzipped or not."""

import gzip
from pathlib import Path

import numpy as np
import torch

from dcond.errors import DcondError

_IMAGES, _LABELS = 0x00000803, 0x00000801


def read_idx(path: Path) -> torch.Tensor:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DcondError(f"cannot read {path}: {e}") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic not in (_IMAGES, _LABELS):
        raise DcondError(f"{path} is not an IDX file of uint8 images or labels")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) != offset + int(np.prod(shape)):
        raise DcondError(f"{path} is truncated or malformed: header says {shape}, file has {len(raw) - offset} bytes")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape).copy())
