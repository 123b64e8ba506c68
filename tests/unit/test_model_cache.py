"""Model lifecycle: unloading or switching really drops the model (checked with weakrefs).

On a GPU the same mechanics return the VRAM; here the CUDA calls are observed through a
stand-in, since the test machines have no GPU.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from collections.abc import Iterator

import pytest
import torch

from workstation import model_cache
from workstation.model_cache import ModelCache


class CyclicModel(torch.nn.Module):
    """A model that references itself, as real ones do via hooks and closures."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 16)
        self.self_ref = [self]


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    """Only the cache's own gc.collect() may free cycles, so the test proves it runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_unload_frees_a_model_held_in_a_cycle(no_automatic_gc: None) -> None:
    cache = ModelCache()
    ref = weakref.ref(cache.get("a", CyclicModel))
    assert ref() is not None
    assert cache.unload("a")
    assert ref() is None
    assert cache.loaded() == ()
    assert not cache.unload("a")


def test_switching_unloads_the_previous_model_before_loading(no_automatic_gc: None) -> None:
    cache = ModelCache(capacity=1)
    first = weakref.ref(cache.get("a", CyclicModel))
    seen_during_load: list[object] = []

    def load_second() -> CyclicModel:
        seen_during_load.append(first())
        return CyclicModel()

    cache.get("b", load_second)
    assert seen_during_load == [None], "the old model was still alive while the new one loaded"
    assert cache.loaded() == ("b",)


def test_cached_models_are_reused_and_evicted_least_recently_used() -> None:
    cache = ModelCache(capacity=2)
    calls: list[str] = []

    def loader(name: str):
        def load() -> str:
            calls.append(name)
            return f"model {name}"

        return load

    assert cache.get("a", loader("a")) == "model a"
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))
    cache.get("c", loader("c"))
    assert calls == ["a", "b", "c"]
    assert cache.loaded() == ("a", "c")


def test_a_failing_loader_stores_nothing() -> None:
    cache = ModelCache()

    def broken() -> object:
        raise OSError("weights truncated")

    with pytest.raises(OSError):
        cache.get("a", broken)
    assert cache.loaded() == ()
    assert cache.get("a", lambda: "ok") == "ok"


def test_clear_empties_the_cuda_cache_when_cuda_is_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    fake_cuda = types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        synchronize=lambda: calls.append("synchronize"),
        empty_cache=lambda: calls.append("empty_cache"),
        memory_allocated=lambda: 0,
        memory_reserved=lambda: 0,
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    cache = ModelCache()
    cache.get("a", lambda: "model")
    cache.clear()
    assert calls == ["synchronize", "empty_cache"]
    assert model_cache.gpu_memory() == model_cache.GpuMemory(0, 0)


def test_capacity_must_hold_a_model() -> None:
    with pytest.raises(ValueError):
        ModelCache(capacity=0)
