"""Analysis across processes and machines with ``torch.distributed``, as launched by ``torchrun``.

    torchrun --nproc-per-node P [--nnodes M --node-rank R --master-addr HOST] -m oga_core.cli analyze ...

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`from_environment` turns them
into a :class:`World`. Every rank reads the same source (and ``$OGA_HOME`` must be one shared
folder for several machines). Training is data-parallel (``DistributedDataParallel``): each rank
takes an interleaved slice of every epoch's shuffled order, with the global batch the recipe's,
so the run matches one process's. Scoring is embarrassingly parallel: rank r scores samples
r, r + W, r + 2W, ... (no padding: every sample once) and the pieces are gathered. Rank 0 alone
writes the cache, the workspace and the results; a failing rank ends with one ``oga: error``
line, and ``torchrun`` then stops the others, so nothing partial is recorded as complete
(docs/architecture.md, "Scale"). Backend: NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from oga_core.errors import OgaError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` processes; ``local_rank`` picks its GPU."""

    rank: int
    size: int
    local_rank: int
    backend: str

    @property
    def leader(self) -> bool:
        """Rank 0: the one process that writes anything."""
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        """This rank's sample indices of ``n``: rank, rank + size, ... (each sample on one rank)."""
        return np.arange(self.rank, n, self.size)

    def barrier(self) -> None:
        dist.barrier()

    def leader_first(self, work: Callable[[], T]) -> T:
        """``work()`` on rank 0, then on the others: rank 0 fills the cache, the others read it."""
        if self.leader:
            result = work()
            self.barrier()
            return result
        self.barrier()
        return work()

    def all_sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over ranks (float64)."""
        tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(self._device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def gather_rows(self, local: np.ndarray, n: int) -> np.ndarray:
        """The full ``(n, ...)`` array from each rank's rows for :meth:`shard` (every rank gets it)."""
        local = np.ascontiguousarray(local)
        rows = -(-n // self.size)  # the largest shard; smaller ones are padded for all_gather
        padded = np.zeros((rows, *local.shape[1:]), dtype=local.dtype)
        padded[: len(local)] = local
        tensor = torch.from_numpy(padded).to(self._device())
        pieces = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(pieces, tensor)
        out = np.empty((n, *local.shape[1:]), dtype=local.dtype)
        for r, piece in enumerate(pieces):
            count = len(range(r, n, self.size))
            out[r :: self.size] = piece[:count].cpu().numpy()
        return out

    def gather_objects(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (small things: timings, messages)."""
        found: list[Any] = [None] * self.size
        dist.all_gather_object(found, obj)
        return found

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


def from_environment() -> World | None:
    """The world ``torchrun`` describes in the environment, or None for one process."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise OgaError("WORLD_SIZE is set but RANK is not: launch several processes with torchrun") from None
    backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    return World(rank=rank, size=size, local_rank=local_rank, backend=backend)


def start(world: World, *, timeout_s: float = 1800) -> None:
    """Join the process group (``MASTER_ADDR`` / ``MASTER_PORT`` as set by torchrun)."""
    if dist.is_initialized():
        return
    if world.backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(
        backend=world.backend,
        rank=world.rank,
        world_size=world.size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def stop(*, synchronise: bool = True) -> None:
    """Leave the process group. ``synchronise`` (after a run that succeeded on this rank): first
    free what may still hold the group (a DDP wrapper in a reference cycle, freed after the group
    is gone, aborted a rank with "terminate called without an active exception") and wait for the
    other ranks, so no rank destroys the group while another still uses it. After a failure the
    rank leaves at once: the others may never reach a barrier."""
    if dist.is_initialized():
        if synchronise:
            gc.collect()
            dist.barrier()
        dist.destroy_process_group()
