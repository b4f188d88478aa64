"""Process-group setup for torchrun, and wrapping a built model for data parallelism.

Order of what is applied to a model (each from outside the model code): activation checkpointing
(`decoder.gradient_checkpointing`) -> torch.compile of each block (`decoder.compile`, in
build_model) -> DDP or FSDP2 (here).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from toolkit.config import ConfigError
from toolkit.train.precision import resolve_device


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Read torchrun's environment; start a process group when there is more than one process."""
    use_cuda = resolve_device(device) == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, dev)


def wrap_model(model: nn.Module, info: DistInfo, strategy: str, find_unused: bool) -> nn.Module:
    """DDP (any device) or FSDP2 (CUDA) around a built model; the model itself when single-process."""
    if not info.enabled:
        return model
    if strategy == "fsdp":
        if info.device.type != "cuda":
            raise ConfigError("distributed.strategy: fsdp needs CUDA; use ddp on CPU")
        return shard_fsdp(model)
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def shard_fsdp(model: nn.Module) -> nn.Module:
    """FSDP2: each decoder block is its own shard group, then the rest of the model (in place)."""
    from torch.distributed.fsdp import fully_shard

    for layer in model.decoder.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t)
    return t


def all_gather_lists(items: list, info: DistInfo) -> list:
    """The concatenation of every process's `items` (picklable), in rank order."""
    if not info.enabled:
        return list(items)
    parts: list = [None] * info.world_size
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Close the process group once nothing holds it (a model wrapper left to a later collection
    would be torn down after its group, which can hang gloo)."""
    if info.enabled and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
