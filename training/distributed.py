"""Distributed rounds on PyTorch's own engine: the one place that knows about ranks.

``torchrun --nproc_per_node N -m training ...`` (or ``iad-workstation train --processes N``)
starts N copies of the round; torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) tells each copy who it is. Every round kind
(adapter, self-taught, VLM LoRA) uses the same few verbs from here, so the rules are
written once:

- the trained module is wrapped in ``DistributedDataParallel``, which averages the
  gradients of the ranks; each rank computes its *share* of the global batch, and its
  loss is weighted by ``share * N / global`` so that the average is the loss of the whole
  global batch (exactly, for a loss that is a mean over examples);
- the batch stream is sharded rank-strided (``shard``): every rank draws the same global
  indices from the same seeded generator and keeps every N-th one, so a 2-process round
  sees the very batches of the 1-process round. Where examples are *made* rather than
  picked (the self-taught round's crops and synthetic defects), each rank draws its own
  from ``seed + rank`` instead, so no two ranks paint the same defect;
- losses and clocks are reduced across ranks, so every rank takes the same decisions
  (stop, checkpoint, diverged) in the same step: a rank that stopped alone would leave
  the others waiting for it forever;
- rank 0 alone writes (checkpoints, the model, metrics, the manifest copy), prints the
  progress lines, judges the candidate and decides the gate; the other ranks train
  their share and leave.

With one process nothing here touches ``torch.distributed``: no process group is made and
every verb is the identity, so a single-process round runs exactly as before.
Backends: gloo on CPU, nccl on CUDA (one GPU a process, ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from workstation.core.errors import UserError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
Batch = TypeVar("Batch", list[int], "torch.Tensor")


@dataclass(frozen=True)
class World:
    """Who this process is among the round's processes; one process by default."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""
    """``gloo`` or ``nccl`` once a process group exists; empty for a single process."""

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise UserError(f"rank {self.rank} of {self.size} processes is not a valid rank")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World:
        """The identity torchrun hands each process (absent: one process)."""
        env = os.environ if env is None else env
        size = int(env.get("WORLD_SIZE", "1") or 1)
        rank = int(env.get("RANK", "0") or 0)
        return cls(rank=rank, size=size, local_rank=int(env.get("LOCAL_RANK", rank) or 0))

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes, reports and decides."""
        return self.rank == 0

    # --------------------------------------------------------------- splitting the work

    def seed(self, base: int) -> int:
        """This rank's seed for what it makes itself (crops, synthetic defects)."""
        return base + self.rank

    def share(self, total: int) -> int:
        """How many of a global batch of ``total`` this rank computes (the first
        ``total % size`` ranks take one more)."""
        if total < self.size:
            raise UserError(
                f"a global batch of {total} cannot be split across {self.size} processes; "
                "use fewer processes or a larger batch_size"
            )
        return total // self.size + (1 if self.rank < total % self.size else 0)

    def shard(self, items: Batch) -> Batch:
        """This rank's items of a global batch: every ``size``-th, from ``rank`` on
        (a list or a tensor of indices alike)."""
        if len(items) < self.size:
            self.share(len(items))  # raises the explanation
        return items[self.rank :: self.size]

    def weight(self, share: int, total: int) -> float:
        """Loss weight of a rank's mean over ``share`` of ``total`` examples: DDP averages
        the ranks' gradients, so this makes the result the gradient of the global mean."""
        return share * self.size / total

    # ------------------------------------------------------------ the trained module

    def wrap(self, module: torch.nn.Module, device: str) -> torch.nn.Module:
        """``module`` itself for one process; else DDP around it (gradients averaged in
        backward, rank 0's parameters and buffers broadcast at the start). Keep using the
        plain module for saving and evaluation: its state dict has no ``module.`` prefix.

        On CUDA, batch norm layers become synchronised, so their statistics are those of
        the global batch as in one process (``SyncBatchNorm`` works on GPUs only; on CPU
        each rank normalises its share, which the tolerance of the 1 vs 2 process test
        covers)."""
        if not self.enabled:
            return module
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if device.startswith("cuda"):
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
            return DistributedDataParallel(module, device_ids=[self.local_rank])
        return DistributedDataParallel(module)

    def accumulating(self, wrapped: torch.nn.Module, *, last: bool) -> Any:
        """Context for one micro-batch's backward under gradient accumulation: gradients
        are averaged across ranks only on the last one (``no_sync`` before), so every
        rank joins exactly one reduction per optimiser step whatever its share."""
        if not self.enabled or last:
            return nullcontext()
        return wrapped.no_sync()  # type: ignore[operator]

    # ------------------------------------------------------------------- reductions

    def _tensor(self, values: Sequence[float]) -> torch.Tensor:
        import torch

        device = f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"
        return torch.tensor(list(values), dtype=torch.float64, device=device)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (a loss, a metric)."""
        return self.total(value) / self.size if self.enabled else value

    def total(self, value: float) -> float:
        """The sum of ``value`` over the ranks."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        tensor = self._tensor([value])
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return float(tensor.item())

    def agree(self, *values: float) -> tuple[float, ...]:
        """The largest of each value over the ranks: progress and "a checkpoint is due"
        come from each rank's own clock, and every rank must act on the same answer."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        tensor = self._tensor(values)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tuple(float(v) for v in tensor.tolist())

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank (small picklable objects:
        random generator states for the checkpoint)."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out


_current = World()


def world() -> World:
    """This process's world: set by :func:`init_from_env`, one process otherwise."""
    return _current


def init_from_env(device: str, env: Mapping[str, str] | None = None) -> tuple[World, str]:
    """Join the round's process group when torchrun started more than one process.

    Returns the world and this rank's device (``cuda`` becomes ``cuda:LOCAL_RANK``).
    With one process it returns at once and ``torch.distributed`` is never touched.
    """
    global _current
    launched = World.from_env(env)
    if not launched.enabled:
        _current = launched
        return launched, device
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        # Checked alike on every rank, so rank 0 reports it rather than waiting for a
        # rank that already gave up.
        count = torch.cuda.device_count()
        here = int((os.environ if env is None else env).get("LOCAL_WORLD_SIZE", launched.size))
        if here > count:
            raise UserError(
                f"{here} processes on this machine but only {count} GPU(s); "
                f"use --processes {max(count, 1)} or --device cpu"
            )
        torch.cuda.set_device(launched.local_rank)
        device, backend = f"cuda:{launched.local_rank}", "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    _current = World(launched.rank, launched.size, launched.local_rank, backend)
    _end_with_launcher()
    return _current, device


LAUNCHER_POLL_S = 0.5


def _end_with_launcher() -> None:
    """End this rank as soon as its launcher is gone.

    torchrun starts every rank in a session of its own, so the app's cancel (SIGKILL of
    torchrun, as for a single-process round) never reaches the ranks: orphaned, they
    would train on, hold the progress pipe open and write a model nobody waits for."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(LAUNCHER_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-launcher", daemon=True).start()


def shutdown() -> None:
    """Leave the process group (if any); the process is a single one again."""
    global _current
    if _current.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _current = World()

