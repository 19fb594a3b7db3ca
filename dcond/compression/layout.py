"""The compressed bank on disk (encoding "compressed") and its reader, which `train-student` uses through the
common `Bank` interface (spec: docs/artifact-format.md).

    bank/shared.safetensors[.zst]       what every part shares: `pool`, the kept batch ids, when pruned, and a
                                        coding's per-image tensors (lowrank's mean and basis); absent when
                                        there is neither
    bank/labels-00000.safetensors[.zst] part 0: the coded labels of the kept views that `rows_in_memory`
                                        allows (whole batches), rows in stored order (kept batches by
                                        ascending id, each batch's views in order)
    bank/views-00000.safetensors[.zst]  part 0's `Views`, end to end; absent when they are drawn again from
                                        the bank's seed, which compression checks batch by batch
    …

Parts are what bounds memory: compress-labels holds one part at a time, and train-student reading a bank
that replays its epochs in order holds one part at a time too. A pool (a pruned bank) is replayed in random
order, so its parts, small by construction, stay in memory once read.
"""

import bisect
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import torch

from dcond.artifact import MANIFEST, Artifact, ArtifactWriter, ZSTD_SUFFIX
from dcond.bank import BANK_DIR, ENCODINGS, BankBatch
from dcond.compression import CODINGS, Tensors, batch_rows, batches_per_epoch, record
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


class Writer:
    """Writes a compressed bank's files, the shared ones first, then part by part; `files` is what the manifest
    records of them (names and uncompressed sizes)."""

    def __init__(self, w: ArtifactWriter, info: dict[str, Any], image_size: int, zstd_level: int):
        self.w, self.info, self.zstd_level = w, info, zstd_level
        self.suffix = ".safetensors" + (ZSTD_SUFFIX if zstd_level else "")
        self.files: dict[str, Any] = {"parts": []}
        seeded = info.get("views") is not None and info.get("seed") is not None
        self._drawn = lru_cache(maxsize=1)(lambda e: drawn_views(info, image_size, e)) if seeded else None

    def shared(self, tensors: Tensors) -> None:
        if tensors:
            self.files["shared"] = self._save(f"{BANK_DIR}/shared", tensors)

    def part(self, ids: list[int], batches: list[BankBatch], labels: Tensors) -> None:
        """One part: the coded labels of `batches` (the kept batches `ids`), and their views unless every one is
        what the bank's seed draws again."""
        n = len(self.files["parts"])
        entry = {"batches": len(ids), "labels": self._save(f"{BANK_DIR}/labels-{n:05d}", labels)}
        if not self._from_seed(ids, batches):
            entry["views"] = self._save(f"{BANK_DIR}/views-{n:05d}", Views.concat([b.views for b in batches]).tensors())
        self.files["parts"].append(entry)

    @property
    def views_from_seed(self) -> bool:
        return not any("views" in part for part in self.files["parts"])

    def _from_seed(self, ids: list[int], batches: list[BankBatch]) -> bool:
        """Whether the views of these batches are exactly what the bank's seed draws again (not so for an imported
        bank, or if the drawing code changed since the bank was made)."""
        if self._drawn is None:
            return False
        nb = batches_per_epoch(self.info)
        for i, batch in zip(ids, batches):
            drawn = self._drawn(i // nb).batch(i % nb).tensors()
            if not all(torch.equal(drawn[k], v) for k, v in batch.views.tensors().items()):
                return False
        return True

    def _save(self, stem: str, tensors: Tensors) -> dict[str, Any]:
        name = stem + self.suffix
        return {"name": name, "raw_bytes": self.w.save_tensors(name, tensors, zstd_level=self.zstd_level)}


class _Part:
    """A part as train-student reads it: its labels (with the shared tensors) as float32, its views if stored,
    and where each of its batches' rows start."""

    def __init__(self, labels: Tensors, views: Views | None, offsets: torch.Tensor):
        self.labels, self.views, self.offsets = labels, views, offsets

    def rows(self, batch: int) -> slice:
        return slice(int(self.offsets[batch]), int(self.offsets[batch + 1]))


@ENCODINGS.register("compressed")
class CompressedBank:
    def __init__(self, art: Artifact):
        self.art, self.info = art, art.section["bank"]
        self.image_size = art.dataset.image_size
        _check_section(art)
        files = self.info["files"]
        shared = self._tensors(files["shared"]) if "shared" in files else {}
        pool = shared.pop(POOL, None)
        self.ids = pool.long() if pool is not None else torch.arange(self.info["source_epochs"] *
                                                                      batches_per_epoch(self.info))
        self.shared = dequantize(shared)
        self.starts = [0]  # the position of each part's first batch
        for part in files["parts"]:
            self.starts.append(self.starts[-1] + part["batches"])
        self.decode = CODINGS.get(self.info["coding"])
        self._drawn = lru_cache(maxsize=1)(lambda e: drawn_views(self.info, self.image_size, e))
        # epochs replay their parts in order; a pool draws from all of them
        self._part = lru_cache(maxsize=None if self.epochs is None else 1)(self._read_part)
        if self.starts[-1] != len(self.ids) or not bool(((self.ids >= 0) & (self.ids < self.info["source_epochs"] *
                                                        batches_per_epoch(self.info))).all()):
            raise DcondError(f"{art.path}: the compressed bank's files do not hold what its manifest describes")

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
            j = bisect.bisect_right(self.starts, p) - 1
            part, local = self._part(j), p - self.starts[j]
            rows = part.rows(local)
            source_epoch, b = divmod(int(self.ids[p]), nb)
            views = part.views.take(local, rows) if part.views is not None else self._drawn(source_epoch).batch(b)
            try:
                logits = self.decode(part.labels, self.info, rows, views.order)
            except (IndexError, RuntimeError, KeyError) as e:  # indices or shapes a damaged file carries
                raise DcondError(f"{self.art.path}: the compressed labels of batch {p} do not decode ({e})") from None
            yield BankBatch(views, logits)

    def _read_part(self, j: int) -> _Part:
        """Part `j`, checked: as many label and view rows as its batches hold (the last row decodes)."""
        entry = self.info["files"]["parts"][j]
        sizes = [batch_rows(int(i), self.info) for i in self.ids[self.starts[j]:self.starts[j + 1]]]
        offsets = torch.tensor([0, *sizes]).cumsum(0)
        labels = dequantize(self._tensors(entry["labels"])) | self.shared
        views = Views.from_tensors(self._tensors(entry["views"]), self.info["batch_size"]) if "views" in entry \
            else None
        rows = int(offsets[-1])
        try:
            ok = (views is None or len(views.order) == rows) and \
                len(self.decode(labels, self.info, slice(rows - 1, rows), torch.zeros(1, dtype=torch.long))) == 1
        except (IndexError, RuntimeError, KeyError):
            ok = False
        if not ok:
            raise DcondError(f"{self.art.path}: {entry['labels']['name']} does not hold the views its manifest "
                             "describes")
        return _Part(labels, views, offsets)

    def _tensors(self, entry: dict[str, Any]) -> Tensors:
        tensors = self.art.tensors(entry["name"], entry["raw_bytes"])
        for key in tensors:
            tensor(tensors, key, str(self.art.path / entry["name"]))  # finite
        return tensors


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
    batches = epochs * batches_per_epoch(info.data)
    entries = [files.section("shared")] if "shared" in files.data else []
    for i, part in enumerate(files.list("parts")):
        part = Fields(part, f"{files.where}.parts[{i}]")
        part.int("batches", 1, batches)
        entries += [part.section(role) for role in ("labels", "views") if role in part.data or role == "labels"]
    for entry in entries:
        if entry.str("name") not in art.files:
            raise entry.bad("name", "is not a file of the artifact")
        entry.int("raw_bytes", 1, dense)
    if any("views" not in part for part in files.data["parts"]):  # views drawn again from the bank's seed
        info.int("seed", 0, MAX_SEED)
