"""Runs under PyTorch's own launcher: `torchrun --nproc-per-node N -m dcond …` (or multi-node rendezvous).

`world()` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK; MASTER_ADDR/PORT are read by
torch.distributed), starts the process group once (NCCL for CUDA tensors, gloo for CPU ones), pins each
rank to its GPU, and tells stages their rank and world size. Without those variables it describes a
single process, and every collective is a no-op.
"""

import atexit
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.distributed as dist

from dcond import log


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun, with a process group (also of one process: NCCL on one GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.launched

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def share(self, value: Any) -> Any:
        """Rank 0's value on every rank (a default output path chosen from the clock, say)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def shard(self, items: list) -> list:
        """This rank's share of independent work: every size-th item, starting at its rank (no padding)."""
        return items[self.rank:: self.size]


def gpus_per_process() -> bool:
    """Whether each of torchrun's processes on this machine can have a GPU of its own."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return torch.cuda.is_available() and local <= torch.cuda.device_count()


_ALONE: ContextVar[bool] = ContextVar("alone", default=False)


def world() -> World:
    """This process's place among torchrun's; within `alone()`, a process on its own (keeping its GPU)."""
    launched = _launched()
    return World(local_rank=launched.local_rank) if _ALONE.get() else launched


@contextmanager
def alone():
    """Within it, stages work as if this were the only process: for independent jobs spread over torchrun's
    ranks (each rank trains its own students), with no collective and no shared output."""
    token = _ALONE.set(True)
    try:
        yield
    finally:
        _ALONE.reset(token)


@cache
def _launched() -> World:
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return World()
    size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    gpus = gpus_per_process()
    if gpus:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():  # every rank decides alike: one GPU each, or none (resolve_device says why)
        dist.init_process_group("cpu:gloo,cuda:nccl" if gpus else "gloo")
        # Left to the interpreter's teardown, gloo's threads were sometimes still joinable when the group was
        # freed, and a rank that had finished its work aborted ("terminate called without an active exception").
        atexit.register(dist.destroy_process_group)
    if rank:
        log.set_prefix(f"[rank {rank}] ")
    return World(rank, size, local_rank, launched=True)
