"""compress-labels: shrink a dense soft-label bank by a chain of methods (prune, topk, lowrank, quantize), with
optional zstandard compression of every file, into a labels artifact `train-student` reads directly.

Choose the kept batches, fit the coding where it needs the whole bank (lowrank, a pass per chunk of images),
then stream the kept batches through the chain a part at a time: code, store, write, and add up the mean KL
divergence between the original and the reconstructed label distributions. Memory holds one part, not the
bank; views the bank's seed draws again are left out.
"""

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dcond.artifact import Artifact, ArtifactWriter, open_artifact
from dcond.bank import BANK_DIR, Bank, BankBatch, open_bank
from dcond.compression import (CODE, CODINGS, METHODS, PICK, STORE, Coder, Store, Tensors, batches_per_epoch, layout,
                               rows_in_memory)
from dcond.compression.logits import Logits
from dcond.compression.quantize import Float16, dequantize
from dcond.config import CompressConfig
from dcond.distributed import world
from dcond.errors import DcondError
from dcond.log import info, progress
from dcond.stages.relabel import link_images


def compress_labels(labels: Path, cfg: CompressConfig, out: Path | None = None, force: bool = False) -> Path:
    art = open_artifact(labels, kinds=("labels",))
    bank = open_bank(art)
    if bank.info["encoding"] != "dense":
        raise DcondError(f"{labels} holds an already compressed bank ({bank.info['encoding']}); compress the dense "
                         "bank it was made from")
    steps = {METHODS.get(name).phase: (name, METHODS.get(name).make(bank.info, asdict(cfg))) for name in cfg.methods}
    kept = steps[PICK][1].ids if PICK in steps else list(range(bank.epochs * batches_per_epoch(bank.info)))
    coder: Coder = steps[CODE][1] if CODE in steps else Logits()
    store: Store = steps[STORE][1] if STORE in steps else Float16()
    with ArtifactWriter(out, "labels", art.dataset, stage="compress-labels", config={"labels": str(labels),
                        **asdict(cfg)}, parents=[("labels", art)], force=force) as w:
        if world().is_main:  # the work of one process; under torchrun the other ranks wait for it
            link_images(w, art)
            writer = layout.Writer(w, bank.info, art.dataset.image_size, cfg.zstd_level)
            shared = store(coder.fit(_kept_batches(bank, kept), w.scratch))
            writer.shared(shared | ({layout.POOL: torch.tensor(kept, dtype=torch.int32)} if PICK in steps else {}))
            records = {name: step.record for name, step in steps.values()}
            section = _section(bank.info, cfg, coder.coding, [{"method": n} | records[n] for n in cfg.methods])
            kl = _write_parts(writer, bank, kept, coder, store, shared, section)
            if not writer.views_from_seed:
                info("some views cannot be drawn again from the bank's seed; storing them")
            _finish(w, art, section | {"files": writer.files, "views_from_seed": writer.views_from_seed}, kl, cfg)
    return w.out


def _kept_batches(bank: Bank, kept: list[int]) -> Iterator[tuple[int, BankBatch]]:
    """The kept batches of the dense bank with their ids, in order, reading only the epochs that hold some."""
    nb = batches_per_epoch(bank.info)
    wanted = set(kept)
    for e in sorted({i // nb for i in kept}):
        for b, batch in enumerate(bank.epoch(e)):
            if e * nb + b in wanted:
                yield e * nb + b, batch


def _write_parts(writer: layout.Writer, bank: Bank, kept: list[int], coder: Coder, store: Store, shared: Tensors,
                 section: dict[str, Any]) -> float:
    """Code, store and write the kept batches a part at a time; returns the mean KL of the kept views' labels."""
    decode, t, part_rows = CODINGS.get(coder.coding), section["temperature"], rows_in_memory(section)
    shared = dequantize(shared)  # as the reader sees it, once
    kl_sum, views, rows = 0.0, 0, 0
    ids: list[int] = []
    batches: list[BankBatch] = []
    with progress("compress batches", len(kept)) as task:
        for i, (batch_id, batch) in enumerate(_kept_batches(bank, kept)):
            ids.append(batch_id)
            batches.append(batch)
            rows += len(batch.logits)
            if rows >= part_rows or i == len(kept) - 1:
                logits = torch.cat([b.logits for b in batches])
                order = torch.cat([b.views.order for b in batches]).long()
                stored = store(coder.encode(logits, order))
                writer.part(ids, batches, stored)
                restored = decode(dequantize(stored) | shared, section, slice(None), order)
                kl_sum += float(F.kl_div(F.log_softmax(restored / t, 1), F.log_softmax(logits / t, 1),
                                         log_target=True, reduction="sum"))
                views += len(logits)
                task.advance(len(ids))
                ids, batches, rows = [], [], 0
    return kl_sum / views


def _finish(w: ArtifactWriter, art: Artifact, section: dict[str, Any], kl: float, cfg: CompressConfig) -> None:
    files = [section["files"].get("shared"), *(f for part in section["files"]["parts"]
                                               for f in (part["labels"], part.get("views")))]
    original = sum(e["size"] for name, e in art.files.items() if name.startswith(f"{BANK_DIR}/"))
    stored = sum(w.path(f["name"]).stat().st_size for f in files if f)
    section |= {"original_bytes": original, "bytes": stored, "ratio": original / stored, "kl": kl}
    w.section["bank"] = section
    w.card |= _card(art.section["bank"], section, cfg.method)
    info(f"{original:,} → {stored:,} bytes ({section['ratio']:.1f}×), mean KL {section['kl']:.4g}")


def _section(src: dict[str, Any], cfg: CompressConfig, coding: str, chain: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's bank section, without what writing adds (files, sizes, the KL)."""
    shared = {k: src[k] for k in ("batch_size", "num_images", "num_classes", "temperature", "views", "seed",
                                  "teachers")}
    return shared | {"encoding": "compressed", "epochs": None if "prune" in cfg.methods else src["epochs"],
                     "source_epochs": src["epochs"], "methods": cfg.methods, "chain": chain, "coding": coding,
                     "zstd_level": cfg.zstd_level}


def _card(src: dict[str, Any], section: dict[str, Any], method: str) -> dict[str, Any]:
    return {"title": f"Soft labels for {src['num_images']} condensed images, compressed by {method}",
            "summary": f"A {src['epochs']}-epoch {src['dtype']} bank of {section['original_bytes']:,} bytes stored in "
                       f"{section['bytes']:,} ({section['ratio']:.1f}× smaller); mean KL divergence of the kept "
                       f"views' labels at T = {src['temperature']}: {section['kl']:.4g}.",
            "usage": ["dcond train-student <this folder> --model convnet"]}
