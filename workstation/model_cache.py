"""The one holder of loaded models, so switching or unloading one really frees its memory.

Why: PyTorch returns GPU memory to the driver only when no Python reference to the tensors
is left *and* its caching allocator is told to let go. Users of similar tools report VRAM
that stays full after switching models: a stale reference (a dict, a closure, a reference
cycle inside a model) keeps the old weights alive, or the allocator keeps the freed blocks
reserved. Here every loaded model lives in one place under a key; evicting it drops the
reference, runs the cycle collector and empties the CUDA cache.

The contract for callers (the model lane): ask the cache for the model at the start of
each job and do not keep it in attributes or closures afterwards, otherwise the cache can
drop its reference but the memory stays in use.

torch is imported only if something already imported it: a cache of weight-free models
never pays for torch.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class GpuMemory:
    """CUDA allocator figures in bytes (all zero without CUDA)."""

    allocated: int = 0
    reserved: int = 0


def gpu_memory() -> GpuMemory:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return GpuMemory()
    return GpuMemory(torch.cuda.memory_allocated(), torch.cuda.memory_reserved())


def release_memory() -> GpuMemory:
    """Collect unreachable objects (cycles hold tensors too) and return cached GPU blocks.

    Returns the allocator figures afterwards, so callers and benchmarks can log them.
    """
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return gpu_memory()


class ModelCache:
    """At most ``capacity`` loaded models by key; the least recently used one goes first.

    ``capacity=1`` (the default) means switching models unloads the previous one before
    the next loads, so two large models never share the GPU. Thread-safe, but loading runs
    under the lock on purpose: two threads asking for different models must not both hold
    a model in memory at once.
    """

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError("a model cache needs room for at least one model")
        self._capacity = capacity
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: str, loader: Callable[[], T]) -> T:
        """The model under ``key``, loading it with ``loader()`` after making room."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            if len(self._models) >= self._capacity:
                self._evict(self._capacity - 1)
            # A loader that fails stores nothing: the next call tries again.
            model = loader()
            self._models[key] = model
            return model

    def loaded(self) -> tuple[str, ...]:
        """Keys of the loaded models, least recently used first."""
        with self._lock:
            return tuple(self._models)

    def unload(self, key: str) -> bool:
        """Drop ``key`` and free its memory; False when it was not loaded."""
        with self._lock:
            if key not in self._models:
                return False
            del self._models[key]
        release_memory()
        return True

    def clear(self) -> None:
        """Unload everything (on product switch, device change or shutdown)."""
        with self._lock:
            self._evict(0)

    def _evict(self, keep: int) -> None:
        while len(self._models) > keep:
            self._models.popitem(last=False)
        release_memory()
