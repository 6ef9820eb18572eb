"""Training on several processes with DistributedDataParallel: ``torchrun --nproc-per-node N script.py``.

Under ``torchrun`` (which sets WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous address), or in a
program that has initialized ``torch.distributed`` itself, ``fit`` trains one model in N processes:

* every process draws the same shuffle and the same dynamic binarization (the data generator is
  seeded with ``seed`` everywhere), so all of them hold the same global batch of ``batch_size``
  images, and each takes its slice, ``batch.tensor_split(N)[rank]``;
* each computes the objective on its slice with its own reparameterization noise (torch's global
  generator seeded with ``seed + rank``) and ``DistributedDataParallel`` averages the gradients, each
  process's loss weighted by its share of the batch, so the step is the one-process step on the global
  batch with that noise (up to float rounding in the sum); every process then takes the same Adam step;
* the epoch's train terms are summed over the processes; rank 0 locks and writes the checkpoint, with
  the random state of every rank, and a resumed run (the same number of processes) continues.

The process group uses gloo on CPU and nccl on CUDA (one GPU per process, ``cuda:LOCAL_RANK``); ``fit``
starts it when torchrun launched the program and leaves it to the later calls (starting a group again
in one torchrun program can meet the old group's rendezvous keys).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Team", "join", "DistributedObjective"]


class Team:
    """The processes training one model: ``rank`` of ``world_size`` (0 of 1 alone)."""

    def __init__(self, device: torch.device, rank: int = 0, world_size: int = 1) -> None:
        self.device, self.rank, self.world_size = device, rank, world_size
        self.share_of_batch = 1.0  # this process's rows * world_size / the global batch's rows

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def slices(self, batches: Iterator[Any]) -> Iterator[Any]:
        """This process's slice of every global batch (a tensor, or an (images, labels) pair); the
        batches themselves alone."""
        for batch in batches:
            if not self.distributed:
                yield batch
                continue
            rows = len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
            if isinstance(batch, (tuple, list)):
                mine = tuple(part.tensor_split(self.world_size)[self.rank] for part in batch)
            else:
                mine = batch.tensor_split(self.world_size)[self.rank]
            self.share_of_batch = len(mine[0] if isinstance(mine, tuple) else mine) * self.world_size / rows
            yield mine

    def objective(self, objective: Any, model: nn.Module) -> Any:
        """The objective each process trains: ``objective`` itself alone, else its DDP version."""
        return DistributedObjective(objective, model, self) if self.distributed else objective

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes (in place)."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def check_batches(self, n: int, batch_size: int) -> None:
        """Every global batch of ``n`` examples must give each process at least one row."""
        last = n % batch_size or batch_size
        if self.distributed and min(batch_size, last, n) < self.world_size:
            raise ValueError(
                f"batch_size={batch_size} on {n} examples leaves a batch of {min(batch_size, last, n)} rows for "
                f"{self.world_size} processes; every process needs at least one row of each batch: choose a "
                "batch_size (and a number of examples) so that no batch is smaller than the number of processes."
            )


def join(device: torch.device) -> Team:
    """The team of this process, with its ``device``: alone, unless ``torch.distributed`` is initialized
    or torchrun started this process (WORLD_SIZE > 1), in which case the group is started here (gloo
    on CPU, nccl on CUDA; it stays for the rest of the program); a CUDA device without an index
    becomes ``cuda:LOCAL_RANK``."""
    if not (dist.is_available() and dist.is_initialized()):
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return Team(device)
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 asks for several processes, but this torch has no torch.distributed.")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    elif device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return Team(device, dist.get_rank(), dist.get_world_size())


class _Step(nn.Module):
    """The module DDP wraps: the model's parameters, and a forward that is the objective."""

    def __init__(self, model: nn.Module, objective: Any) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, model: Any, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, Any]:
        return self.objective(model, x, kl_weight)


class DistributedObjective:
    """``objective`` run through ``DistributedDataParallel``: backward averages the gradients of the
    processes; the loss returned is weighted by this process's share of the global batch (1 when the
    slices are equal), so the average is the gradient of the global batch's mean loss."""

    def __init__(self, objective: Any, model: nn.Module, team: Team) -> None:
        self.team, self.inner = team, objective
        self.kl_weighted = getattr(objective, "kl_weighted", False)
        device = next(model.parameters()).device
        ids = [device] if device.type == "cuda" else None
        self.ddp = nn.parallel.DistributedDataParallel(_Step(model, objective), device_ids=ids)

    def settings(self) -> dict[str, object]:
        return self.inner.settings()

    def __call__(self, model: Any, x: torch.Tensor, kl_weight: float = 1.0) -> tuple[torch.Tensor, Any]:
        loss, terms = self.ddp(model, x, kl_weight)
        return loss * self.team.share_of_batch, terms
