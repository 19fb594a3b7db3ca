"""What a selection method may use (SelectContext)."""

from dataclasses import dataclass

import torch
from torch import nn

from dcond.data import DatasetSpec, to_input
from dcond.engine import autocast
from dcond.models import classifier


@dataclass
class SelectContext:
    """What a selection method may use: the teacher, the dataset spec and the stage's settings."""

    teacher: nn.Module
    spec: DatasetSpec
    device: torch.device
    options: dict
    batch_size: int = 500

    @torch.no_grad()
    def logits_and_features(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher logits and penultimate features of normalised float inputs, computed in batches."""
        captured: list[torch.Tensor] = []
        hook = classifier(self.teacher).register_forward_pre_hook(lambda m, args: captured.append(args[0]))
        logits = []
        try:
            for chunk in inputs.split(self.batch_size):
                with autocast(self.device):
                    logits.append(self.teacher(chunk.to(self.device)).float())
        finally:
            hook.remove()
        return torch.cat(logits), torch.cat(captured).float().flatten(1)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        return to_input(images.to(self.device), self.spec)
