"""evaluate of a condensed set: students of several architectures and seeds trained on it under one protocol,
reported per architecture as mean ± std of the last epoch's test top-1, and recorded in the artifact.

The protocol is everything a student's result depends on besides its architecture and seed: the student
recipe's settings (epochs, optimiser, schedule, loss, views) and the labels it reads (the artifact's digest).
Its digest goes with every record, so two results are compared only when their protocols match.
"""

import hashlib
import json
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dcond.artifact import open_artifact, update_metrics
from dcond.errors import DcondError
from dcond.log import info
from dcond.stages.student import student_config, train_student

PROTOCOL_FREE = ("model", "model_options", "seed", "device", "evaluate")  # what may differ between compared runs


@dataclass
class AssessConfig:
    models: list[str] = field(default_factory=lambda: ["convnet"])
    seeds: int = 3
    epochs: int | None = None  # default: the student recipe's
    recipe: str = "dcond"
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.models or any(not m.strip() for m in self.models):
            raise DcondError("--models must name at least one model (comma-separated)")
        if not 1 <= self.seeds <= 100:
            raise DcondError("--seeds must lie in 1 … 100")
        if self.epochs is not None and self.epochs < 1:
            raise DcondError("--epochs must be at least 1")


def protocol(settings: dict[str, Any], source_digest: str) -> tuple[dict[str, Any], str]:
    """The settings every compared student shares, with the labels' artifact, and their digest."""
    shared = {k: v for k, v in settings.items() if k not in PROTOCOL_FREE} | {"labels": source_digest}
    shared.pop("source", None)  # the path: where the artifact lies is not part of the protocol, its digest is
    text = json.dumps(shared, sort_keys=True, default=str)
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()


def assess(source: Path, cfg: AssessConfig) -> dict[str, Any]:
    """Train `seeds` students of each model on the condensed set at `source`; return and record, per model, the
    runs' test top-1 and their mean and std, under the protocol's digest."""
    art = open_artifact(source, kinds=("images", "labels"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="dcond-evaluate-") as scratch:  # the students are not kept
        for model in cfg.models:
            runs, record = [], None
            for seed in range(cfg.seeds):
                settings = student_config(source, cfg.recipe, model=model, seed=seed, epochs=cfg.epochs,
                                          device=cfg.device)
                out = train_student(source, settings, Path(scratch) / f"{model.replace(':', '_')}-{seed}")
                metrics = open_artifact(out).metrics
                key = next(k for k in metrics if "best-of-last" not in k)  # the last epoch's, never the best
                runs.append(metrics[key]["top1"])
                shared, digest = protocol(asdict(settings), art.digest)
                record = {"model": model, "split": key, "runs": runs, "top1_mean": statistics.fmean(runs),
                          "top1_std": statistics.stdev(runs) if len(runs) > 1 else 0.0,
                          "protocol_digest": digest, "protocol": shared}
            info(f"{model}: top-1 {record['top1_mean']:.4f} ± {record['top1_std']:.4f} over {cfg.seeds} seeds")
            results[model] = record
            update_metrics(art, f"students:{model}:{record['protocol_digest'][:12]}", record)
    return results
