"""A validation split: a class-balanced share of the training images held out and measured on in place of the test
split, so that settings can be chosen without the test split ever being looked at. Made by `train-teacher
--validation F`; the teacher records it, and every later stage of its chain holds out the same images and
measures on them (the test split is then out of reach: rerun the chain without it for test figures)."""

from dataclasses import replace

import torch

from dcond.data.folder import names_digest
from dcond.data.images import ImageDataset, held_out
from dcond.data.sources import Source
from dcond.errors import DcondError

VALIDATION = "validation"
VALIDATION_SEED = 1000  # not the held-out split's seed: the two draws stay independent


class Validation:
    """`inner` with `fraction` of each class of its training split held out as the split to measure on. The spec
    records the share and a digest of the held-out positions in the training split."""

    eval_split = VALIDATION

    def __init__(self, inner: Source, fraction: float):
        self.train_all = inner.split("train")
        held = torch.tensor(sorted(held_out(self.train_all.labels, inner.spec.num_classes, fraction,
                                            VALIDATION_SEED)), dtype=torch.long)
        kept = torch.ones(len(self.train_all), dtype=torch.bool)
        kept[held] = False
        self.held, self.kept = held, kept.nonzero().flatten()
        record = {"fraction": fraction, "seed": VALIDATION_SEED, **names_digest([str(i) for i in held.tolist()])}
        self.spec = replace(inner.spec, source={**inner.spec.source, VALIDATION: record})

    def split(self, name: str) -> ImageDataset:
        if name == "train":
            return self.train_all.take(self.kept)
        if name == VALIDATION:
            return self.train_all.take(self.held)
        raise DcondError(f"{self.spec.name} is split for validation: only its train and validation splits are "
                         f"used (asked for '{name}'); rerun the chain without --validation to measure on it")
