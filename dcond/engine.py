"""What every training stage shares: device choice, mixed precision, optimisers, schedules, evaluation."""

import math
import os
from contextlib import nullcontext
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dcond.data import DatasetSpec, ImageDataset, batches, to_input
from dcond.distributed import gpus_per_process, world
from dcond.errors import DcondError

DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "smoothing", "two-piece", "linear", "multistep", "constant")


def resolve_device(name: str) -> torch.device:
    """The device to compute on; under torchrun, each rank's own GPU."""
    if name not in DEVICES:
        raise DcondError(f"--device must be one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DcondError("--device cuda was asked for, but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if world().distributed and not gpus_per_process():  # two processes cannot share one GPU under NCCL
        gpus = torch.cuda.device_count()
        raise DcondError(f"torchrun started more processes on this machine than it has GPUs ({gpus}): pass "
                         f"--nproc-per-node={gpus}, or --device cpu")
    return torch.device("cuda", world().local_rank)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (no loss scaling needed); full precision on the CPU."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last on CUDA, where convolutions run faster in it; DCOND_CHANNELS_LAST=1 asks for it everywhere
    (the tests run the CUDA layout on the CPU with it), =0 nowhere."""
    choice = os.environ.get("DCOND_CHANNELS_LAST", "auto")
    if choice not in ("auto", "0", "1"):
        raise DcondError(f"DCOND_CHANNELS_LAST must be auto, 0 or 1, not {choice!r}")
    wanted = device.type == "cuda" if choice == "auto" else choice == "1"
    return torch.channels_last if wanted else torch.contiguous_format


def place(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to the device, in the memory format convolutions run fastest in there."""
    return model.to(device, memory_format=memory_format(device))


def ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """The model wrapped for data-parallel training under torchrun; the model itself otherwise."""
    if not world().distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def decay_groups(model: nn.Module, weight_decay: float, norms_too: bool = True) -> list[dict[str, Any]]:
    """Parameter groups for the optimiser: with `norms_too` off, weight decay only on weight matrices and
    kernels (ndim > 1), not on biases or normalisation weights, as the RDED, EDC and SRe2L students do."""
    params = [p for p in model.parameters() if p.requires_grad]
    if norms_too:
        return [{"params": params, "weight_decay": weight_decay}]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def make_optimizer(name: str, params, lr: float, weight_decay: float, momentum: float = 0.9, nesterov: bool = True,
                   device: torch.device = torch.device("cpu")):
    """On CUDA the fused kernels: one launch per step instead of several per parameter tensor."""
    fused = device.type == "cuda"
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    raise DcondError(f"unknown optimizer '{name}' (known: {', '.join(OPTIMIZERS)})")


WARMUP_START = 0.01  # torchvision's reference scripts warm up linearly from 1 % of the rate (--lr-warmup-decay)


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0, zeta: float = 2.0,
              milestones: tuple[float, ...] = (), gamma: float = 0.5) -> float:
    """Learning-rate multiplier at `step` of `total`: a linear warm-up from WARMUP_START over `warmup` steps (as
    torchvision's LinearLR), then, with t the share of the rest, cosine to 0, the 'smoothing' schedule
    0.5·(1 + cos(π·t/ζ)) of RDED/EDC (which ends at a fraction of the base rate), EDC's CIFAR-100 'two-piece'
    (smoothing up to t = 5/6, then its value there × (1 − t): a drop to a sixth, then linear to 0), 'linear'
    1 − t/ζ (what EDC's ImageNet script runs), 'multistep' (× gamma at each milestone, given as fractions of the
    run), or constant."""
    if step < warmup:
        return WARMUP_START + (1 - WARMUP_START) * step / warmup
    t = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "smoothing":
        return 0.5 * (1 + math.cos(math.pi * t / zeta))
    if schedule == "two-piece":
        return 0.5 * (1 + math.cos(math.pi * min(t, 5 / 6) / zeta)) * (1 if t <= 5 / 6 else 1 - t)
    if schedule == "linear":
        return 1 - t / zeta
    if schedule == "multistep":
        return gamma ** sum(t >= m for m in milestones)
    if schedule == "constant":
        return 1.0
    raise DcondError(f"unknown schedule '{schedule}' (known: {', '.join(SCHEDULES)})")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device` without waiting. A blocking copy to a GPU first waits for all the work queued there, so the
    host could not prepare the next batch while the GPU runs this one; and a copy from pageable memory may wait
    likewise even when asked not to block, so small host tensors go through pinned memory (a cached block,
    kept until the copy is done)."""
    if device.type != "cuda" or t.device.type == "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def to_host(t: torch.Tensor) -> tuple[torch.Tensor, Callable[[], None]]:
    """A host copy of `t` that fills while the GPU runs on, and a function that waits until it is filled. Reading a
    GPU tensor directly would also wait for all the work queued after it, leaving the GPU idle."""
    if t.device.type != "cuda":
        return t, lambda: None
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    filled = torch.cuda.Event()
    filled.record()
    return host, filled.synchronize


@torch.no_grad()
def ensemble_logits(models: list[nn.Module], x: torch.Tensor, device: torch.device, amp: bool = True) -> torch.Tensor:
    """The mean of several teachers' logits (one teacher: its logits), in float32."""
    with autocast(device, amp):
        return torch.stack([m(x).float() for m in models]).mean(0)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ImageDataset, spec: DatasetSpec, device: torch.device,
             batch_size: int = 500) -> dict[str, Any]:
    """Top-1, top-5 and per-class accuracy, and mean cross-entropy, of `model` on `dataset`, and the share of
    each image's centre it was viewed on."""
    model.eval()
    k = min(5, spec.num_classes)
    # sums stay on the device until the end: reading one per batch would wait for the GPU every batch
    correct, seen = torch.zeros(spec.num_classes, device=device), torch.zeros(spec.num_classes, device=device)
    top_k, loss_sum = torch.zeros((), device=device), torch.zeros((), device=device)
    for images, labels in batches(dataset, batch_size):
        labels = on_device(labels, device)
        with autocast(device):
            logits = model(to_input(on_device(images, device), spec)).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        hits = logits.topk(k, dim=1).indices == labels[:, None]
        correct.index_add_(0, labels, hits[:, 0].float())
        seen.index_add_(0, labels, torch.ones(len(labels), device=device))
        top_k += hits.any(1).sum()
    correct, seen, top_k, loss_sum = correct.cpu(), seen.cpu(), int(top_k), float(loss_sum)
    n = int(seen.sum())
    if n == 0:
        raise DcondError("the evaluation set is empty")
    return {"top1": float(correct.sum() / n), f"top{k}": top_k / n, "loss": loss_sum / n, "samples": n,
            "centre_crop": dataset.crop,
            "per_class": {name: float(correct[c] / seen[c]) if seen[c] else None
                          for c, name in enumerate(spec.classes)}}
