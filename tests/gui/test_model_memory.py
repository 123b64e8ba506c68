"""GPU memory hygiene, checked on CPU: a model switch leaves no reference to the old model.

On a GPU the same release path (``model_cache.release_memory``) also empties the CUDA
cache; here weakrefs prove the references are gone, with automatic gc off so only the
explicit collection can free the cycles real models contain.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.gui.conftest import wait_idle
from workstation.core.errors import UserError
from workstation.gui.launch import application
from workstation.gui.workers import Lane, exclusive_model_job
from workstation.model_cache import ModelCache

JOB_WAIT_MS = 30000
"""An exclusive job runs full collections: with transformers loaded by an earlier test in
the same worker, each takes seconds on a busy machine (5 s timed out)."""


class Model:
    """Stands in for a loaded model: it references itself, as real ones do via hooks."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def lane(qtbot):  # type: ignore[no-untyped-def]
    application()
    lane = Lane("memory")
    yield lane
    assert lane.shutdown()


def test_an_exclusive_job_unloads_the_cache_and_frees_its_own_model(  # type: ignore[no-untyped-def]
    qtbot, lane, no_automatic_gc
) -> None:
    models = ModelCache()
    cached = weakref.ref(models.get("explainer", Model))
    refs: list[weakref.ref[Model]] = []

    def inspect(_progress, _cancel) -> str:  # type: ignore[no-untyped-def]
        assert cached() is None  # the explainer is gone before the experts load
        pipeline = Model()
        refs.append(weakref.ref(pipeline))
        return "done"

    results: list[str] = []
    lane.submit(exclusive_model_job(models, inspect), on_result=results.append)
    qtbot.waitUntil(lambda: results == ["done"], timeout=JOB_WAIT_MS)
    assert models.loaded() == ()
    assert refs[0]() is None


def test_a_failing_exclusive_job_frees_its_model_too(qtbot, lane, no_automatic_gc) -> None:  # type: ignore[no-untyped-def]
    refs: list[weakref.ref[Model]] = []
    errors: list[BaseException] = []

    def inspect(_progress, _cancel) -> None:  # type: ignore[no-untyped-def]
        pipeline = Model()
        refs.append(weakref.ref(pipeline))
        raise UserError("the image folder vanished")

    lane.submit(exclusive_model_job(ModelCache(), inspect), on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=JOB_WAIT_MS)
    # the exception still travels to the GUI thread, but no longer carries the model
    assert isinstance(errors[0], UserError)
    assert refs[0]() is None


def loaded_explainer(ws):  # type: ignore[no-untyped-def]
    (key,) = ws.models.loaded()
    return ws.models.get(key, lambda: pytest.fail("the explainer should be loaded"))


def test_switching_product_or_explainer_unloads_the_explainer(  # type: ignore[no-untyped-def]
    qtbot, window, no_automatic_gc
) -> None:
    ws = window.ws
    window.controller.redraft()
    wait_idle(qtbot, ws)
    first = weakref.ref(loaded_explainer(ws))

    ws.settings = replace(
        ws.settings, explainer=replace(ws.settings.explainer, max_new_tokens=77)
    )
    window.controller.redraft()
    wait_idle(qtbot, ws)
    assert first() is None  # the new settings loaded a new explainer in place of the old
    second = weakref.ref(loaded_explainer(ws))

    ws.store.create_product("other")
    window.open_product("other")
    wait_idle(qtbot, ws)
    assert ws.models.loaded() == ()
    assert second() is None
