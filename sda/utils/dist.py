"""Distributed helpers that also work without a launcher (single process).

With ``torchrun`` the usual environment variables (RANK, WORLD_SIZE, LOCAL_RANK)
select the process group; CUDA uses NCCL, CPU uses gloo.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from sda.utils.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool


def init_distributed(device: str | None = None) -> DistInfo:
    """Initialise the process group when launched by torchrun (one process too: the same NCCL or gloo
    code paths as on many GPUs); otherwise a 1-process world without a group.

    ``device``: "cpu", "cuda" or None (CUDA when available).
    """
    want_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = world_size > 1 or "TORCHELASTIC_RUN_ID" in os.environ  # torchrun sets it
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, dev, distributed)


def is_grouped() -> bool:
    """True inside a torch.distributed process group (torchrun)."""
    return dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the process group, or (0, 1) without one."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Gather one picklable object from every rank (a one-element list without a group)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rank0_plan(make_plan: Callable[[], T]) -> T:
    """Rank 0 makes the plan (lists the work, checks the inputs) before anyone writes; every rank gets it.

    A :class:`UserError` raised on rank 0 is raised on every rank, so no rank waits for a plan that never
    comes. Without a process group the caller is its own rank 0.
    """
    if not dist.is_initialized():
        return make_plan()
    payload: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            payload[0] = ("ok", make_plan())
        except UserError as e:
            payload[0] = ("error", str(e))
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise UserError(value)
    return value


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's share: ``items[rank::world_size]``. Every item lands on exactly one rank."""
    return list(items[rank::world_size])


def shard_batches(n: int, batch_size: int, rank: int, world_size: int) -> list[int]:
    """This rank's indices of ``range(n)`` as whole batches: the batches ``[0, b), [b, 2b), ...`` are dealt
    out ``batches[rank::world_size]``, so every batch has the same composition whatever the world size."""
    starts = list(range(0, n, batch_size))[rank::world_size]
    return [i for s in starts for i in range(s, min(s + batch_size, n))]


def cleanup() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
