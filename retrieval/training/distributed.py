"""Distributed data parallel training: one process per device, started by torchrun.

Every rank reads its own part of the shards, embeds its share of the global batch, and
all-gathers the features with their gradients (as open_clip's `gather_features` does), so the
InfoNCE negatives are the whole global batch and every rank computes the same loss. DDP averages
the gradients; only rank 0 validates and writes metrics and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_world() -> World:
    """The world torchrun describes in the environment (a single process when absent)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def start(device: str) -> tuple[World, str]:
    """Join the process group (gloo on CPU, nccl on GPU); (world, this rank's device)."""
    world = launched_world()
    if not world.distributed:
        return world, device
    if device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return world, device


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def gather_with_grad(features: torch.Tensor, world: World) -> torch.Tensor:
    """All ranks' features, rank by rank; gradients flow back to the rank that made each row."""
    if not world.distributed:
        return features
    import torch.distributed.nn

    return torch.cat(torch.distributed.nn.all_gather(features), dim=0)


def gather_objects(items: list, world: World) -> list:
    """All ranks' lists of picklable items, rank by rank (no gradients: labels, ids)."""
    if not world.distributed:
        return items
    parts: list = [None] * world.size
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]
