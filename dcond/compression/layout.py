"""The compressed bank on disk (encoding "compressed") and its reader, which `train-student` uses through the
common `Bank` interface (spec: docs/artifact-format.md).

    bank/labels.safetensors[.zst]  the coded labels of the kept views, rows in stored order (kept batches by
                                   ascending id, each batch's views in order); `pool`, the kept batch ids,
                                   when pruned
    bank/views.safetensors[.zst]   the kept batches' `Views`, end to end; absent when they are drawn again
                                   from the bank's seed, which compression checks before leaving them out
"""

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import torch

from dcond.artifact import MANIFEST, Artifact, ArtifactWriter, ZSTD_SUFFIX
from dcond.bank import BANK_DIR, ENCODINGS, BankBatch
from dcond.compression import CODINGS, batches_per_epoch, record
from dcond.compression.work import Work, batch_offsets
from dcond.compression.prune import draw
from dcond.compression.quantize import dequantize
from dcond.config import FILLS
from dcond.data.augment import ViewConfig, Views, draw_epoch, epoch_generator
from dcond.errors import DcondError
from dcond.validate import MAX_EPOCHS, MAX_SEED, Fields, tensor

POOL = "pool"


def drawn_views(info: dict[str, Any], image_size: int, epoch: int) -> Views:
    """The views of a relabel epoch, drawn again from the bank's seed."""
    return draw_epoch(info["num_images"], info["batch_size"], ViewConfig.from_dict(info["views"]), image_size,
                      epoch_generator(info["seed"], epoch))


def views_from_seed(work: Work, image_size: int) -> bool:
    """Whether every kept batch's views are exactly what the bank's seed draws again (not so for imported
    banks, or if the drawing code changed since the bank was made)."""
    if work.info.get("views") is None or work.info.get("seed") is None:
        return False
    nb = batches_per_epoch(work.info)
    epoch = lru_cache(maxsize=1)(lambda e: drawn_views(work.info, image_size, e))
    for i, batch in zip(work.ids, work.batches):
        drawn = epoch(i // nb).batch(i % nb).tensors()
        if not all(torch.equal(drawn[k], v) for k, v in batch.views.tensors().items()):
            return False
    return True


def write(w: ArtifactWriter, work: Work, pruned: bool, from_seed: bool, zstd_level: int) -> dict[str, Any]:
    """Write the bank's files; returns the `files` entry of its section: name and uncompressed size of each."""
    suffix = ".safetensors" + (ZSTD_SUFFIX if zstd_level else "")
    labels = work.tensors | ({POOL: torch.tensor(work.ids, dtype=torch.int32)} if pruned else {})
    parts = {"labels": labels}
    if not from_seed:
        parts["views"] = Views.concat([b.views for b in work.batches]).tensors()
    files = {}
    for role, tensors in parts.items():
        name = f"{BANK_DIR}/{role}{suffix}"
        files[role] = {"name": name, "raw_bytes": w.save_tensors(name, tensors, zstd_level=zstd_level)}
    return files


@ENCODINGS.register("compressed")
class CompressedBank:
    def __init__(self, art: Artifact):
        self.art, self.info = art, art.section["bank"]
        self.image_size = art.dataset.image_size
        _check_section(art)
        stored = self._tensors("labels")
        pool = stored.pop(POOL, None)
        self.ids = pool.long() if pool is not None else torch.arange(self.info["source_epochs"] *
                                                                      batches_per_epoch(self.info))
        self.offsets = batch_offsets(self.ids, self.info)
        self.labels = dequantize(stored)
        self.decode = CODINGS.get(self.info["coding"])
        self.views = Views.from_tensors(self._tensors("views"), self.info["batch_size"]) \
            if "views" in self.info["files"] else None
        self._drawn = lru_cache(maxsize=1)(lambda e: drawn_views(self.info, self.image_size, e))
        self._check()

    @property
    def epochs(self) -> int | None:
        return self.info["epochs"]

    def epoch(self, e: int) -> Iterator[BankBatch]:
        nb = batches_per_epoch(self.info)
        if self.epochs is None:  # a pool: this epoch's draws from it
            positions = draw(len(self.ids), nb, record(self.info, "prune")["seed"], e)
        else:
            positions = range(e * nb, (e + 1) * nb)
        for p in positions:
            rows = slice(int(self.offsets[p]), int(self.offsets[p + 1]))
            source_epoch, b = divmod(int(self.ids[p]), nb)
            views = self.views.take(p, rows) if self.views is not None else self._drawn(source_epoch).batch(b)
            try:
                logits = self.decode(self.labels, self.info, rows, views.order)
            except (IndexError, RuntimeError, KeyError) as e:  # indices or shapes a damaged file carries
                raise DcondError(f"{self.art.path}: the compressed labels of batch {p} do not decode ({e})") from None
            yield BankBatch(views, logits)

    def _tensors(self, role: str) -> dict[str, torch.Tensor]:
        entry = self.info["files"][role]
        tensors = self.art.tensors(entry["name"], entry["raw_bytes"])
        for key in tensors:
            tensor(tensors, key, str(self.art.path / entry["name"]))  # finite
        return tensors

    def _check(self) -> None:
        """The files hold what the manifest describes: the kept batches exist, the views and labels have as many
        rows as those batches (the last row decodes)."""
        batches = self.info["source_epochs"] * batches_per_epoch(self.info)
        rows = int(self.offsets[-1])
        try:
            ok = bool(((self.ids >= 0) & (self.ids < batches)).all()) and \
                (self.views is None or len(self.views.order) == rows) and \
                len(self.decode(self.labels, self.info, slice(rows - 1, rows), torch.zeros(1, dtype=torch.long))) == 1
        except (IndexError, RuntimeError, KeyError):
            ok = False
        if not ok:
            raise DcondError(f"{self.art.path}: the compressed bank's files do not hold what its manifest describes")


def _check_section(art: Artifact) -> None:
    """The compressed bank's manifest section: what the reader sizes and indexes by."""
    info = Fields(art.section["bank"], f"{art.path / MANIFEST}: labels.bank")
    epochs = info.int("source_epochs", 1, MAX_EPOCHS)
    info.str("coding", tuple(CODINGS.names()))
    steps = {}
    for i, step in enumerate(info.list("chain")):
        step = Fields(step, f"{info.where}.chain[{i}]")
        steps[step.str("method")] = step
    needed = (["prune"] if info.data["epochs"] is None else []) + (["topk"] if info.data["coding"] == "topk" else [])
    for method in needed:
        if method not in steps:
            raise info.bad("chain", f"has no {method} record")
    if "prune" in needed:  # a pool: each epoch replays draws from it, seeded by the prune step
        steps["prune"].int("seed", 0, MAX_SEED)
    if "topk" in needed:
        steps["topk"].str("fill", FILLS)
    files = info.section("files")
    # a dense float32 bank of the same views bounds what the files may expand to (a frame cannot claim more)
    dense = epochs * info.data["num_images"] * (info.data["num_classes"] * 4 + 64) + (1 << 20)
    for role in files.data:
        entry = files.section(role)
        if role not in ("labels", "views") or entry.str("name") not in art.files:
            raise files.bad(role, "is not a file of the artifact's labels or views")
        entry.int("raw_bytes", 1, dense)
    if "labels" not in files.data:
        raise DcondError(f"{files.where}.labels is missing")
    if "views" not in files.data:  # the views are drawn again from the bank's seed and view configuration
        info.int("seed", 0, MAX_SEED)
        info.section("views")
