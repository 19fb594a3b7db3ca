"""evaluate of a condensed set: students of several architectures and seeds trained on it under one protocol,
reported per architecture as mean ± std of the last epoch's test top-1, and recorded in the artifact.

The protocol is everything a student's result depends on besides its architecture and seed: the student
recipe's settings (epochs, optimiser, schedule, loss, views) and the labels it reads (the artifact's digest).
Its digest goes with every record, so two results are compared only when their protocols match.
"""

import hashlib
import json
import math
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dcond.artifact import MANIFEST, Artifact, ArtifactWriter, open_artifact, save_images, update_metrics
from dcond.bank import has_bank
from dcond.data import DataOptions, load_all
from dcond.data.augment import ViewConfig
from dcond.data.images import class_indices
from dcond.data.sources import load_for_teacher
from dcond.errors import DcondError
from dcond.log import info
from dcond.stages.relabel import RelabelConfig, link_images, relabel
from dcond.stages.student import student_config, train_student

PROTOCOL_FREE = ("model", "model_options", "seed", "device", "evaluate")  # what may differ between compared runs
BASELINE_SEED = 0  # the random real images of a baseline are drawn with this seed


@dataclass
class AssessConfig:
    models: list[str] = field(default_factory=lambda: ["convnet"])
    seeds: int = 3
    epochs: int | None = None  # default: the student recipe's
    recipe: str = "dcond"
    baseline: str | None = None  # "random": the same protocol on random real images of the same IPC, and scores
    lrs_weight: float = 0.5  # DD-Ranking's w: the weight of improvement over random against hard-label recovery
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.models or any(not m.strip() for m in self.models):
            raise DcondError("--models must name at least one model (comma-separated)")
        if not 1 <= self.seeds <= 100:
            raise DcondError("--seeds must lie in 1 … 100")
        if self.epochs is not None and self.epochs < 1:
            raise DcondError("--epochs must be at least 1")
        if self.baseline not in (None, "random"):
            raise DcondError("--baseline must be random")
        if not 0 <= self.lrs_weight <= 1:
            raise DcondError("--lrs-weight must lie in [0, 1]")


def protocol(settings: dict[str, Any], source_digest: str) -> tuple[dict[str, Any], str]:
    """The settings every compared student shares, with the labels' artifact, and their digest."""
    shared = {k: v for k, v in settings.items() if k not in PROTOCOL_FREE} | {"labels": source_digest}
    shared.pop("source", None)  # the path: where the artifact lies is not part of the protocol, its digest is
    text = json.dumps(shared, sort_keys=True, default=str)
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()


def assess(source: Path, cfg: AssessConfig) -> dict[str, Any]:
    """Train `seeds` students of each model on the condensed set at `source`; return and record, per model, the
    runs' test top-1 and their mean and std, under the protocol's digest. With a baseline, the same for random
    real images of the same IPC, and the DD-Ranking-style scores (docs/official/ddranking.md)."""
    art = open_artifact(source, kinds=("images", "labels"))
    with tempfile.TemporaryDirectory(prefix="dcond-evaluate-") as tmp:  # the students are not kept
        scratch = Path(tmp)
        results = students(source, cfg, scratch / "condensed")
        if cfg.baseline == "random":
            add_baseline(results, art, cfg, scratch)
    for model, record in results.items():
        update_metrics(art, f"students:{model}:{record['protocol_digest'][:12]}", record)
    return results


def students(source: Path, cfg: AssessConfig, scratch: Path, labels: str | None = None) -> dict[str, dict[str, Any]]:
    """Per model, the last-epoch test top-1 of `seeds` students trained on `source`, with mean, std, protocol.
    `labels` names the labels in the protocol (default: the artifact's digest; a baseline made afresh for each
    evaluation is named by what it is made of, so that two evaluations of one set compare)."""
    digest = labels or open_artifact(source).digest
    results = {}
    for model in cfg.models:
        runs, settings = [], None
        for seed in range(cfg.seeds):
            settings = student_config(source, cfg.recipe, model=model, seed=seed, epochs=cfg.epochs,
                                      device=cfg.device)
            out = train_student(source, settings, scratch / f"{model.replace(':', '_')}-{seed}")
            metrics = open_artifact(out).metrics
            split = next(k for k in metrics if "best-of-last" not in k)  # the last epoch's, never the best
            runs.append(metrics[split]["top1"])
        shared, protocol_digest = protocol(asdict(settings), digest)
        results[model] = {"model": model, "split": split, "runs": runs, "top1_mean": statistics.fmean(runs),
                          "top1_std": statistics.stdev(runs) if len(runs) > 1 else 0.0,
                          "protocol_digest": protocol_digest, "protocol": shared}
        info(f"{model}: top-1 {results[model]['top1_mean']:.4f} ± {results[model]['top1_std']:.4f} "
             f"over {cfg.seeds} seeds")
    return results


def add_baseline(results: dict[str, dict[str, Any]], art: Artifact, cfg: AssessConfig, scratch: Path) -> None:
    """Random real images under the same protocol, the condensed images with hard labels, the teacher's
    full-data accuracy, and from them per model: improvement over random (IOR), hard-label recovery (HLR) and
    the label-robust score LRS = (e^α − e^−1)/(e − e^−1), α = w·IOR − (1 − w)·HLR, accuracies as fractions."""
    random_set = random_like(art, cfg, scratch)
    random_results = students(random_set, cfg, scratch / "random", f"random(seed {BASELINE_SEED}) like {art.digest}")
    hard_results = results if not has_bank(art) else \
        students(images_of(art, scratch), cfg, scratch / "hard", f"hard labels of {art.digest}")
    full = teacher_accuracy(art, next(iter(results.values()))["split"])
    w = cfg.lrs_weight
    for model, record in results.items():
        ior = record["top1_mean"] - random_results[model]["top1_mean"]
        hlr = None if full is None else full - hard_results[model]["top1_mean"]
        lrs = None if hlr is None else (math.exp(w * ior - (1 - w) * hlr) - math.exp(-1)) / (math.e - math.exp(-1))
        record["baseline"] = {"random": _summary(random_results[model]), "hard_labels": _summary(hard_results[model]),
                              "full_data_top1": full, "random_seed": BASELINE_SEED}
        record["scores"] = {"ior": ior, "hlr": hlr, "lrs": lrs, "lrs_weight": w}


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("runs", "top1_mean", "top1_std", "protocol_digest")}


def random_like(art: Artifact, cfg: AssessConfig, scratch: Path) -> Path:
    """Class-balanced random real training images, as many per class as `art` holds (drawn with BASELINE_SEED),
    labelled as `art` is: the same teachers and bank settings for a dense bank, hard labels otherwise."""
    spec = art.dataset
    _, _, train = load_for_teacher(DataOptions(data=""), spec)
    gen = torch.Generator().manual_seed(BASELINE_SEED)
    picks = [idx[torch.randperm(len(idx), generator=gen)[:n]]
             for idx, n in zip(class_indices(train.labels, spec.num_classes), art.section["per_class"])]
    data = load_all(train.take(torch.cat(picks)))
    with ArtifactWriter(scratch / "random-images", "images", spec, stage="evaluate",
                        config={"baseline": "random", "seed": BASELINE_SEED}) as w:
        save_images(w, data.images, data.labels)
    if not has_bank(art):
        return w.out
    bank = art.section["bank"]
    if bank["encoding"] != "dense" or bank.get("views") is None:
        raise DcondError("--baseline random relabels random images as the bank was made: it needs a dense bank "
                         "made by dcond (compress or import the labels after evaluating)")
    teachers = [Path(p["path"]) for p in art.parents if p["role"] == "teacher"]
    relabel_cfg = RelabelConfig(epochs=bank["epochs"], batch_size=bank["batch_size"],
                                temperature=bank["temperature"], views=ViewConfig.from_dict(bank["views"]),
                                dtype=bank["dtype"], seed=bank["seed"], device=cfg.device)
    return relabel(w.out, teachers, relabel_cfg, scratch / "random-labels")


def images_of(art: Artifact, scratch: Path) -> Path:
    """The images of a labels artifact alone, for students trained on them with hard labels."""
    with ArtifactWriter(scratch / "hard-images", "images", art.dataset, stage="evaluate",
                        config={"images_of": art.digest}) as w:
        link_images(w, art)
    return w.out


def teacher_accuracy(art: Artifact, split: str) -> float | None:
    """The full-data accuracy: the test top-1 of the (first) teacher the artifact was made with, if recorded."""
    teacher = next((p for p in art.parents if p["role"] == "teacher"), None)
    if teacher is None or not (Path(teacher["path"]) / MANIFEST).is_file():
        return None
    return open_artifact(teacher["path"]).metrics.get(split, {}).get("top1")
