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

from dcond.artifact import MANIFEST, Artifact, ArtifactWriter
from dcond.config import LOGIT_DTYPES
from dcond.data.augment import ViewConfig, Views
from dcond.errors import DcondError
from dcond.registry import Registry
from dcond.validate import MAX_EPOCHS, MAX_IMAGES, MAX_SEED, Fields, tensor

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


ENCODINGS: Registry[Callable[[Artifact], Bank]] = Registry("label-bank encoding",
                                                          {"compressed": "dcond.compression.layout"})


def has_bank(art: Artifact) -> bool:
    return art.kind == "labels" and "bank" in art.section


def open_bank(art: Artifact) -> Bank:
    """The bank of a labels artifact, its manifest section checked before anything is read, and every batch it
    yields checked as it is read."""
    if not has_bank(art):
        raise DcondError(f"{art.path} holds no soft-label bank; make one with `dcond relabel IMAGES --teacher T`, "
                         "or with --relabel-epochs N on synthesize or select")
    info = Fields(art.section["bank"], f"{art.path / MANIFEST}: labels.bank")
    info.str("encoding", tuple(ENCODINGS.names()))
    info.equal("num_images", art.section.get("count"), "the number of images (labels.count)")
    info.equal("num_classes", art.dataset.num_classes, "the dataset's classes")
    info.int("batch_size", 1, info.int("num_images", 1, MAX_IMAGES))
    info.int("epochs", 1, MAX_EPOCHS, optional=True)
    info.number("temperature", 0, 1e6, above=True)
    for key in ("seed", "views", "epochs"):  # null: an imported bank's views cannot be drawn again; a pool
        if key not in info.data:
            raise DcondError(f"{info.where}.{key} is missing")
    info.int("seed", 0, MAX_SEED, optional=True)
    info.list("teachers")
    if info.data.get("views") is not None:
        try:
            ViewConfig.from_dict(info.data["views"])
        except (TypeError, ValueError, KeyError, DcondError) as e:
            raise info.bad("views", f"is not a view configuration ({e})") from None
    return CheckedBank(ENCODINGS.get(info.data["encoding"])(art), art)


class CheckedBank:
    """A bank whose batches are checked as they are read: views of the bank's images within their batch,
    finite logits of the dataset's classes. A damaged bank fails with the file and field, never trains."""

    def __init__(self, bank: Bank, art: Artifact):
        self.bank, self.info, self.where = bank, bank.info, f"{art.path}/{BANK_DIR}"

    @property
    def epochs(self) -> int | None:
        return self.bank.epochs

    def epoch(self, e: int) -> Iterator[BankBatch]:
        for b, batch in enumerate(self.bank.epoch(e)):
            where = f"{self.where} (epoch {e}, batch {b})"
            views, n = batch.views, len(batch.views.order)
            batch.views.check_images(self.info["num_images"], where)
            if n and int(views.mix_perm.max()) >= n:
                raise DcondError(f"{where}: tensor 'mix_perm' mixes in views beyond the batch of {n}")
            tensor({"logits": batch.logits}, "logits", where, (n, self.info["num_classes"]))
            yield batch


@ENCODINGS.register("dense")
class DenseBank:
    def __init__(self, art: Artifact):
        self.art, self.info = art, art.section["bank"]
        if self.info.get("epochs") is None:
            raise DcondError(f"{art.path / MANIFEST}: labels.bank.epochs is missing")
        Fields(self.info, f"{art.path / MANIFEST}: labels.bank").str("dtype", LOGIT_DTYPES)
        missing = [e for e in range(self.epochs) if epoch_file(e) not in art.files]
        if missing:
            raise DcondError(f"{art.path}: the bank lists {self.epochs} epochs but its manifest has no "
                             f"{epoch_file(missing[0])}")

    @property
    def epochs(self) -> int:
        return self.info["epochs"]

    def epoch(self, e: int) -> Iterator[BankBatch]:
        where = str(self.art.path / epoch_file(e))
        t = self.art.tensors(epoch_file(e))
        views, logits = Views.from_tensors(t, self.info["batch_size"], where), tensor(t, "logits", where).float()
        views.check_images(self.info["num_images"], where)
        if len(views.order) != self.info["num_images"] or len(views) != -(-len(views.order) // views.batch_size) or \
                logits.shape != (len(views.order), self.info["num_classes"]):
            raise DcondError(f"{where} does not hold the views the manifest describes")
        for b in range(len(views)):
            rows = slice(b * views.batch_size, (b + 1) * views.batch_size)
            yield BankBatch(views.batch(b), logits[rows])


def write_epoch(w: ArtifactWriter, epoch: int, views: Views, logits: torch.Tensor, dtype: torch.dtype) -> None:
    """One epoch of a dense bank (written atomically, so an epoch file that exists is whole)."""
    w.save_tensors(epoch_file(epoch), views.tensors() | {"logits": logits.to(dtype)})
