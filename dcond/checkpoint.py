"""Training checkpoints (model, optimiser state, progress) as safetensors, for resuming interrupted stages."""

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dcond.artifact import atomic_path, plain_tensor
from dcond.models import state_tensors

CHECKPOINT = "checkpoint.safetensors"  # a training stage's checkpoint, in its work folder's scratch


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: dict[str, Any],
                    extra: dict[str, torch.Tensor] | None = None) -> None:
    """Save model, optimiser, JSON-able progress and any `extra` tensors (an EMA, a random generator's state)."""
    tensors = {f"model.{k}": v for k, v in state_tensors(model).items()}
    tensors |= {f"extra.{k}": plain_tensor(v) for k, v in (extra or {}).items()}
    opt = optimizer.state_dict()
    scalars = {}
    for idx, state in opt["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = plain_tensor(value)  # moments follow the weights' layout
            else:
                scalars[f"{idx}.{name}"] = value
    meta = {"param_groups": opt["param_groups"], "scalars": scalars, "progress": progress}
    with atomic_path(path) as tmp:  # a checkpoint is either the old one or the new one, never half of each
        save_file(tensors, tmp, metadata={"checkpoint": json.dumps(meta)})


def load_checkpoint(path: Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model and optimiser from `path`; returns the saved progress and extra tensors."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["checkpoint"])
    tensors = load_file(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    extra = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        if key.startswith(("model.", "extra.")):
            continue
        idx, name = key.removeprefix("optim.").split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta["progress"], extra
