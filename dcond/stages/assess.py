"""evaluate of a condensed set: students of several architectures and seeds trained on it under one protocol,
reported per architecture as mean ± std of the last epoch's test top-1, and recorded in the artifact.

The protocol is everything a student's result depends on besides its architecture and seed: the student
recipe's settings (epochs, optimiser, schedule, loss, views) and the labels it reads (the artifact's digest).
Its digest goes with every record, so two results are compared only when their protocols match.
"""

import json
import math
import statistics
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from dcond import __version__
from dcond.artifact import MANIFEST, Artifact, ArtifactWriter, atomic_path, config_key, open_artifact, \
    save_images, update_metrics
from dcond.bank import has_bank
from dcond.config import AssessConfig, StudentConfig
from dcond.data import DataOptions, load_all
from dcond.data.augment import ViewConfig
from dcond.data.images import class_indices
from dcond.data.sources import load_for_teacher
from dcond.distributed import alone, world
from dcond.engine import resolve_device
from dcond.errors import DcondError
from dcond.log import info
from dcond.stages.relabel import RelabelConfig, link_images, relabel
from dcond.stages.student import student_config, train_student

# what may differ between compared runs
PROTOCOL_FREE = ("model", "model_options", "seed", "device", "evaluate", "checkpoint_seconds")
BASELINE_SEED = 0  # the random real images of a baseline are drawn with this seed
NO_AUGMENTATION = {"crop_scale": (1.0, 1.0), "flip": 0.0, "mix": "none"}  # views of the whole image, as it is


def protocol(settings: dict[str, Any], source_digest: str) -> tuple[dict[str, Any], str]:
    """The settings every compared student shares, with the labels' artifact, and their digest."""
    shared = {k: v for k, v in settings.items() if k not in PROTOCOL_FREE} | {"labels": source_digest}
    shared = json.loads(json.dumps(shared, default=str))  # as recorded: tuples become lists
    return shared, config_key(shared)


def assess(source: Path, cfg: AssessConfig) -> dict[str, Any]:
    """Train `seeds` students of each model on the condensed set at `source`; return and record, per model, the
    runs' test top-1 and their mean and std, under the protocol's digest. With a baseline, the same for random
    real images of the same IPC, and the DD-Ranking-style scores (docs/official/ddranking.md).
    Under torchrun the students are spread over the ranks, each trained by one rank on its own."""
    resolve_device(cfg.device)  # under torchrun, a device error is one line on every rank, before any work
    art = open_artifact(source, kinds=("images", "labels"))
    with tempfile.TemporaryDirectory(prefix="dcond-evaluate-") as tmp:  # the students are not kept
        scratch = Path(tmp)
        results = students(source, cfg, scratch / "condensed")
        if cfg.baseline == "random":
            add_baseline(results, art, cfg, scratch)
    if world().is_main:
        for model, record in results.items():
            update_metrics(art, f"students:{model}:{record['protocol_digest'][:12]}", record)
    return results


def students(source: Path, cfg: AssessConfig, scratch: Path, labels: str | None = None,
             views: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per model, the last-epoch test top-1 of `seeds` students trained on `source` (with `views` in place of the
    recipe's, where the student draws its own), with mean, std and protocol.
    `labels` names the labels in the protocol (default: the artifact's digest; a baseline made afresh for each
    evaluation is named by what it is made of, so that two evaluations of one set compare)."""
    digest = labels or open_artifact(source).digest
    jobs = [(model, seed) for model in cfg.models for seed in range(cfg.seeds)]
    w = world()
    with alone():  # each rank trains its share of the students by itself
        mine = {job: _student(source, cfg, scratch, views, digest, *job) for job in w.shard(jobs)}
    done = {job: result for part in w.gather(mine) for job, result in part.items()}
    results = {}
    for model in cfg.models:
        runs = [done[(model, seed)][1] for seed in range(cfg.seeds)]
        shared, protocol_digest = protocol(asdict(_settings(source, cfg, views, model)), digest)
        results[model] = {"model": model, "split": done[(model, 0)][0], "runs": runs,
                          "top1_mean": statistics.fmean(runs), "top1_std": statistics.stdev(runs) if len(runs) > 1
                          else 0.0, "protocol_digest": protocol_digest, "protocol": shared}
        info(f"{model}: top-1 {results[model]['top1_mean']:.4f} ± {results[model]['top1_std']:.4f} "
             f"over {cfg.seeds} seeds")
    return results


def _settings(source: Path, cfg: AssessConfig, views: dict[str, Any] | None, model: str,
              seed: int = 0) -> StudentConfig:
    return student_config(source, cfg.recipe, views, model=model, seed=seed, epochs=cfg.epochs, device=cfg.device)


def _student(source: Path, cfg: AssessConfig, scratch: Path, views: dict[str, Any] | None, labels: str, model: str,
             seed: int) -> tuple[str, float]:
    """One student's (split, test top-1) at the last epoch, never the best; taken from the cache where one was
    trained alike before."""
    settings = _settings(source, cfg, views, model, seed)
    kept = _kept(cfg, settings, labels)
    if kept is not None and kept.is_file():
        return _read_kept(kept)
    metrics = open_artifact(train_student(source, settings, scratch / f"{model.replace(':', '_')}-{seed}")).metrics
    split = next(k for k in metrics if "best-of-last" not in k)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(kept) as tmp:  # whole or absent, though ranks and processes share the cache
            tmp.write_text(json.dumps({"split": split, "top1": metrics[split]["top1"]}) + "\n")
    return split, metrics[split]["top1"]


def _kept(cfg: AssessConfig, settings: StudentConfig, labels: str) -> Path | None:
    """Where the cache keeps a student: named by its protocol, model, seed, kind of device and dcond version."""
    if cfg.cache is None:
        return None
    key = {"protocol": protocol(asdict(settings), labels)[1], "model": settings.model,
           "options": settings.model_options, "seed": settings.seed, "device": resolve_device(cfg.device).type,
           "dcond": __version__}
    return cfg.cache / f"{config_key(key)}.json"


def _read_kept(path: Path) -> tuple[str, float]:
    try:
        record = json.loads(path.read_text())
        return str(record["split"]), float(record["top1"])
    except (ValueError, KeyError, TypeError) as e:
        raise DcondError(f"{path} is not a student result kept by dcond evaluate --cache ({e}); delete it") from None


def add_baseline(results: dict[str, dict[str, Any]], art: Artifact, cfg: AssessConfig, scratch: Path) -> None:
    """Random real images under the same protocol, the condensed images with hard labels, the teacher's
    full-data accuracy, and both sets again without augmentation; from them per model, with accuracies as
    fractions and N(x) = (e^x − e^−1)/(e − e^−1): improvement over random IOR, hard-label recovery HLR, the
    label-robust score LRS = N(w·IOR − (1 − w)·HLR) and the augmentation-robust score
    ARS = N(γ·(set − random) + (1 − γ)·(set − random, both without augmentation))."""
    bank = has_bank(art)
    with alone():  # each rank makes the same sets in its own scratch: little work beside the students
        random_images = random_images_like(art, scratch / "random-images")
        random_set = labelled_like(random_images, art, cfg, scratch / "random-labels")
        own_images = images_of(art, scratch / "hard-images") if bank else art.path
        plain_sets = {name: labelled_like(images, art, cfg, scratch / f"{name}-plain-labels", NO_AUGMENTATION)
                      for name, images in (("set", own_images), ("random", random_images))}
    named = {"set": f"the set {art.digest}", "random": f"random(seed {BASELINE_SEED}) {made_like(art)}"}
    random_results = students(random_set, cfg, scratch / "random", named["random"])
    hard_results = students(own_images, cfg, scratch / "hard", f"hard labels of {art.digest}") if bank else results
    plain = {name: students(labelled, cfg, scratch / f"{name}-plain", f"{named[name]} without augmentation",
                            NO_AUGMENTATION) for name, labelled in plain_sets.items()}
    full = teacher_accuracy(art, next(iter(results.values()))["split"])
    w, g = cfg.lrs_weight, cfg.ars_weight
    for model, record in results.items():
        ior = record["top1_mean"] - random_results[model]["top1_mean"]
        hlr = None if full is None else full - hard_results[model]["top1_mean"]
        plain_gap = plain["set"][model]["top1_mean"] - plain["random"][model]["top1_mean"]
        record["baseline"] = {"random": _summary(random_results[model]), "hard_labels": _summary(hard_results[model]),
                              "set_without_augmentation": _summary(plain["set"][model]),
                              "random_without_augmentation": _summary(plain["random"][model]),
                              "full_data_top1": full, "random_seed": BASELINE_SEED}
        record["scores"] = {"ior": ior, "hlr": hlr, "lrs": None if hlr is None else _unit(w * ior - (1 - w) * hlr),
                            "ars": _unit(g * ior + (1 - g) * plain_gap), "lrs_weight": w, "ars_weight": g}


def made_like(art: Artifact) -> str:
    """What the random baseline of `art` is made of, the set itself left out: the dataset, the images per class
    and the bank's settings with its teachers (none: hard labels). Sets made alike share a baseline."""
    made = {"dataset": art.manifest["dataset"], "per_class": art.section["per_class"],
            "bank": art.section.get("bank") if has_bank(art) else None}
    return json.dumps(made, sort_keys=True)


def _unit(x: float) -> float:
    """DD-Ranking's map of a score onto [0, 1] for x in [−1, 1]."""
    return (math.exp(x) - math.exp(-1)) / (math.e - math.exp(-1))


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("runs", "top1_mean", "top1_std", "protocol_digest")}


def random_images_like(art: Artifact, out: Path) -> Path:
    """Class-balanced random real training images, as many per class as `art` holds (drawn with BASELINE_SEED)."""
    spec = art.dataset
    _, _, train = load_for_teacher(DataOptions(data=""), spec)
    gen = torch.Generator().manual_seed(BASELINE_SEED)
    picks = [idx[torch.randperm(len(idx), generator=gen)[:n]]
             for idx, n in zip(class_indices(train.labels, spec.num_classes), art.section["per_class"])]
    data = load_all(train.take(torch.cat(picks)))
    with ArtifactWriter(out, "images", spec, stage="evaluate", config={"baseline": "random", "seed": BASELINE_SEED}) \
            as w:
        save_images(w, data.images, data.labels)
    return w.out


def labelled_like(images: Path, art: Artifact, cfg: AssessConfig, out: Path,
                  views: dict[str, Any] | None = None) -> Path:
    """`images` labelled as `art` is: relabelled by the same teachers with the same bank settings (with `views`
    in place of the bank's) where `art` holds a dense bank; left with their hard labels otherwise."""
    if not has_bank(art):
        return images
    bank = art.section["bank"]
    if bank["encoding"] != "dense" or bank.get("views") is None:
        raise DcondError("--baseline random relabels random images as the bank was made: it needs a dense bank "
                         "made by dcond (compress or import the labels after evaluating)")
    teachers = art.parent_paths("teacher")
    drawn = replace(ViewConfig.from_dict(bank["views"]), **(views or {}))
    relabel_cfg = RelabelConfig(epochs=bank["epochs"], batch_size=bank["batch_size"],
                                temperature=bank["temperature"], views=drawn, dtype=bank["dtype"], seed=bank["seed"],
                                device=cfg.device)
    return relabel(images, teachers, relabel_cfg, out)


def images_of(art: Artifact, out: Path) -> Path:
    """The images of a labels artifact alone, for students trained on them with hard labels."""
    with ArtifactWriter(out, "images", art.dataset, stage="evaluate",
                        config={"images_of": art.digest}) as w:
        link_images(w, art)
    return w.out


def teacher_accuracy(art: Artifact, split: str) -> float | None:
    """The full-data accuracy: the test top-1 of the (first) teacher the artifact was made with, if recorded."""
    teacher = next(iter(art.parent_paths("teacher")), None)
    if teacher is None or not (teacher / MANIFEST).is_file():
        return None
    return open_artifact(teacher).metrics.get(split, {}).get("top1")
