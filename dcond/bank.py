"""Soft-label banks: the teacher's outputs for every view a student will see, inside a labels artifact.

A bank is read through one interface, `Bank.epoch(e)`, which yields the views of a student epoch with
their teacher logits. Each stored form (the dense bank `relabel` writes; the compressed forms of
`compress-labels`) registers a reader in `ENCODINGS`, so `train-student` reads them all the same way.

Dense layout: one file per epoch, `bank/epoch_00000.safetensors`, holding the epoch's `Views` tensors
(see `dcond.data.augment`) and `logits` (views × classes, fp16 by default), rows in batch order. The
compressed forms live in `dcond.compression`.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from dcond.artifact import Artifact, ArtifactWriter
from dcond.data.augment import Views
from dcond.errors import DcondError
from dcond.registry import Registry

BANK_DIR = "bank"


def epoch_file(epoch: int) -> str:
    return f"{BANK_DIR}/epoch_{epoch:05d}.safetensors"


@dataclass
class BankBatch:
    views: Views  # one batch of views
    logits: torch.Tensor  # float32, views × classes


class Bank(Protocol):
    info: dict[str, Any]

    @property
    def epochs(self) -> int | None:
        """How many distinct epochs are stored; None for a pool that serves any number of epochs."""

    def epoch(self, e: int) -> Iterator[BankBatch]:
        """The batches of student epoch `e`, in order."""


ENCODINGS: Registry[Callable[[Artifact], Bank]] = Registry("label-bank encoding")


def has_bank(art: Artifact) -> bool:
    return art.kind == "labels" and "bank" in art.section


def open_bank(art: Artifact) -> Bank:
    if not has_bank(art):
        raise DcondError(f"{art.path} holds no soft-label bank; make one with `dcond relabel IMAGES --teacher T`, "
                         "or with --relabel-epochs N on synthesize or select")
    return ENCODINGS.get(art.section["bank"]["encoding"])(art)


@ENCODINGS.register("dense")
class DenseBank:
    def __init__(self, art: Artifact):
        self.art, self.info = art, art.section["bank"]

    @property
    def epochs(self) -> int:
        return self.info["epochs"]

    def epoch(self, e: int) -> Iterator[BankBatch]:
        t = self.art.tensors(epoch_file(e))
        views, logits = Views.from_tensors(t, self.info["batch_size"]), t["logits"].float()
        if len(views.order) != self.info["num_images"] or logits.shape != (len(views.order), self.info["num_classes"]):
            raise DcondError(f"{self.art.path / epoch_file(e)} does not hold the views the manifest describes")
        for b in range(len(views)):
            rows = slice(b * views.batch_size, (b + 1) * views.batch_size)
            yield BankBatch(views.batch(b), logits[rows])


def write_epoch(w: ArtifactWriter, epoch: int, views: Views, logits: torch.Tensor, dtype: torch.dtype) -> None:
    """One epoch of a dense bank (written atomically, so an epoch file that exists is whole)."""
    w.save_tensors(epoch_file(epoch), views.tensors() | {"logits": logits.to(dtype)})


from dcond import compression  # noqa: E402,F401  (registers the compressed encoding)
