"""evaluate: test a model artifact on a dataset's test split and record the result in the artifact."""

from pathlib import Path
from typing import Any

from dcond.artifact import open_artifact, update_metrics
from dcond.config import EvalConfig
from dcond.data import DataOptions, check_same_split, load_eval_split, reopen
from dcond.engine import evaluate, place, resolve_device
from dcond.errors import DcondError
from dcond.log import info
from dcond.models import load_model


def evaluate_artifact(path: Path, data: DataOptions, cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate on the test split of `data` (data.data "" means the dataset the model was trained on, and its
    held-out split where it has no test split); records the metrics."""
    art = open_artifact(path, kinds=("model",))
    trained = art.dataset
    spec, split, test_set = load_eval_split(*reopen(data, trained))
    check_same_split(trained, spec)
    if (spec.num_classes, spec.channels) != (trained.num_classes, trained.channels):
        raise DcondError(f"dataset '{spec.name}' has {spec.num_classes} classes of {spec.channels}-channel images; "
                         f"the model was trained for {trained.num_classes} classes of {trained.channels}-channel ones")
    if spec.classes != trained.classes:
        info(f"note: class names of '{spec.name}' differ from the model's; classes are matched by position")
    device = resolve_device(cfg.device)
    model = place(load_model(art), device)
    metrics = evaluate(model, test_set, trained, device, cfg.batch_size)
    key = f"{spec.name}:{split}" + (f":subset{data.subset}" if data.subset else "")
    update_metrics(art, key, metrics)
    info(f"{key}: top-1 {metrics['top1']:.4f}, top-{min(5, spec.num_classes)} "
         f"{metrics[f'top{min(5, spec.num_classes)}']:.4f}")
    return {"key": key, **metrics}
