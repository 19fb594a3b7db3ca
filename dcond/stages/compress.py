"""compress-labels: shrink a dense soft-label bank by a chain of methods (prune, topk, lowrank, quantize), with
optional zstandard compression of every file, into a labels artifact `train-student` reads directly.

Read the whole bank, run the chain on it in memory, leave out the views when the bank's seed draws them
again, write, and record sizes, the ratio and the mean KL divergence between the original and the
reconstructed label distributions of the kept views.
"""

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch.nn.functional as F

from dcond.artifact import Artifact, ArtifactWriter, open_artifact
from dcond.bank import BANK_DIR, Bank, open_bank
from dcond.compression import CODINGS, METHODS, batches_per_epoch, layout
from dcond.compression.work import Work
from dcond.compression.quantize import dequantize
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
    work = read_bank(bank)
    chain = [{"method": name} | METHODS.get(name).compress(work, asdict(cfg)) for name in cfg.methods]
    work.finish()
    from_seed = layout.views_from_seed(work, art.dataset.image_size)
    if not from_seed:
        info("the views cannot be drawn again from the bank's seed; storing them")
    section = _section(bank.info, cfg, work.coding, chain, from_seed)
    with ArtifactWriter(out, "labels", art.dataset, stage="compress-labels", config={"labels": str(labels),
                        **asdict(cfg)}, parents=[("labels", art)], force=force) as w:
        if world().is_main:  # the work of one process; under torchrun the other ranks wait for it
            _write(w, art, work, section, cfg)
    return w.out


def _write(w: ArtifactWriter, art: Artifact, work: Work, section: dict[str, Any], cfg: CompressConfig) -> None:
    link_images(w, art)
    section["files"] = layout.write(w, work, section["epochs"] is None, section["views_from_seed"], cfg.zstd_level)
    original = sum(e["size"] for name, e in art.files.items() if name.startswith(f"{BANK_DIR}/"))
    stored = sum(w.path(f["name"]).stat().st_size for f in section["files"].values())
    section |= {"original_bytes": original, "bytes": stored, "ratio": original / stored,
                "kl": mean_kl(work, section)}
    w.section["bank"] = section
    w.card |= _card(art.section["bank"], section, cfg.method)
    info(f"{original:,} → {stored:,} bytes ({section['ratio']:.1f}×), mean KL {section['kl']:.4g}")


def _section(src: dict[str, Any], cfg: CompressConfig, coding: str, chain: list[dict[str, Any]],
             from_seed: bool) -> dict[str, Any]:
    """The manifest's bank section, without what writing adds (files, sizes, the KL)."""
    shared = {k: src[k] for k in ("batch_size", "num_images", "num_classes", "temperature", "views", "seed",
                                  "teachers")}
    return shared | {"encoding": "compressed", "epochs": None if "prune" in cfg.methods else src["epochs"],
                     "source_epochs": src["epochs"], "methods": cfg.methods, "chain": chain, "coding": coding,
                     "views_from_seed": from_seed, "zstd_level": cfg.zstd_level}


def _card(src: dict[str, Any], section: dict[str, Any], method: str) -> dict[str, Any]:
    return {"title": f"Soft labels for {src['num_images']} condensed images, compressed by {method}",
            "summary": f"A {src['epochs']}-epoch {src['dtype']} bank of {section['original_bytes']:,} bytes stored in "
                       f"{section['bytes']:,} ({section['ratio']:.1f}× smaller); mean KL divergence of the kept "
                       f"views' labels at T = {src['temperature']}: {section['kl']:.4g}.",
            "usage": ["dcond train-student <this folder> --model convnet"]}


def read_bank(bank: Bank) -> Work:
    nb = batches_per_epoch(bank.info)
    ids, batches = [], []
    with progress("read bank epochs", bank.epochs) as task:
        for e in range(bank.epochs):
            for b, batch in enumerate(bank.epoch(e)):
                ids.append(e * nb + b)
                batches.append(batch)
            task.advance(1)
    return Work(bank.info, ids, batches)


def mean_kl(work: Work, section: dict[str, Any]) -> float:
    """Mean over the kept views of KL(p ‖ p̂) at the bank's temperature, p̂ from the labels as stored."""
    t = section["temperature"]
    restored = CODINGS.get(work.coding)(dequantize(work.tensors), section, slice(None), work.order)
    return float(F.kl_div(F.log_softmax(restored / t, 1), F.log_softmax(work.logits / t, 1), log_target=True,
                          reduction="batchmean"))
