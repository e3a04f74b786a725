"""Which process this is when several cache a corpus together (``torchrun``), and waiting for the others.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) a process group is started here
unless the caller already started one: gloo for CPU models, NCCL for CUDA ones. A single
process needs no group at all.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Workers:
    rank: int
    world_size: int

    def owns(self, shard_index: int) -> bool:
        """Shards are dealt round-robin, so every process gets a disjoint, evenly spread share."""
        return shard_index % self.world_size == self.rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


@contextlib.contextmanager
def workers(device: torch.device) -> Iterator[Workers]:
    if dist.is_available() and dist.is_initialized():
        yield Workers(dist.get_rank(), dist.get_world_size())
        return
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield Workers(0, 1)
        return
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world_size} asks for several processes, but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    try:
        yield Workers(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()

