"""One CPU, one GPU or several processes: torch.distributed directly (gloo on CPU, NCCL on GPU), started by
``torchrun``. A run's global batch is split between the processes and the loss is normalised by global counts,
so N processes take the same steps as one process with the same global batch (tested within float tolerance)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from eoshard.training.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its rank among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over processes of a value that needs no gradient."""
        if self.world == 1:
            return x
        x = x.detach().clone()
        dist.all_reduce(x)
        return x

    def sum_with_grad(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over processes, differentiable (each process's part gets its gradient)."""
        if self.world == 1:
            return x
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(x)

    def shard(self, batch: list[int]) -> list[int]:
        """This process's part of a global batch (contiguous, sizes differ by at most one)."""
        n, w = len(batch), self.world
        start = self.rank * (n // w) + min(self.rank, n % w)
        return batch[start : start + n // w + (self.rank < n % w)]


def pick_device(device: str, local: int = 0) -> torch.device:
    """``auto`` (GPU ``local`` when torch sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``, checked."""
    if device == "auto":
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device {device!r} unknown: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but torch sees no GPU: use device 'cpu' or 'auto'")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} asked for but torch sees {torch.cuda.device_count()} GPUs (cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1}): use one of those or 'auto'"
        )
    return dev


def start(device: str) -> Runtime:
    """The runtime of this process: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is started."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = pick_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(rank, world, dev)


def stop(runtime: Runtime) -> None:
    if runtime.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, runtime: Runtime) -> nn.Module:
    """DistributedDataParallel over several processes (BatchNorm synchronised on GPU), the model itself on one."""
    model.to(runtime.device)
    if runtime.world == 1:
        return model
    if runtime.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@contextlib.contextmanager
def precision(runtime: Runtime, mode: str) -> Iterator[None]:
    """Autocast for ``bf16-mixed`` / ``16-mixed`` on a GPU; full precision otherwise."""
    if mode == "32" or runtime.device.type != "cuda":
        yield
        return
    dtype = torch.bfloat16 if mode == "bf16-mixed" else torch.float16
    with torch.autocast("cuda", dtype=dtype):
        yield
