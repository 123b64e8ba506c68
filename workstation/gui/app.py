"""Composition root: settings, store, services and the worker lanes, built in one place.

Everything the windows need hangs off one :class:`Workstation`, so a test, a benchmark and
the real application assemble the same parts the same way, and closing it stops every
thread it started. It lives in ``gui`` because its lanes are Qt threads: nothing below the
GUI needs it, and the CLI builds only the services it uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from workstation.config import Settings, load_settings
from workstation.core.types import Product
from workstation.gui.workers import Lane
from workstation.model_cache import ModelCache
from workstation.paths import default_db_path
from workstation.services.review import ReviewService
from workstation.store.repository import Store

log = logging.getLogger(__name__)

CLOSE_WAIT_MS = 1500
"""How long quitting waits for the lanes before it says why it still waits."""


@dataclass
class Workstation:
    settings: Settings
    store: Store
    model_lane: Lane
    """Owns every torch object: experts, explainer (see workers.py)."""
    io_lane: Lane
    """Reads images ahead and writes every edit, in order."""
    models: ModelCache = field(default_factory=ModelCache)
    """Models kept loaded between model-lane jobs (the explainer); one at a time, so a
    switch of product or settings unloads the previous one before the next loads. Touched
    only from model-lane jobs, which own every torch object."""
    _closed: bool = field(default=False, repr=False)

    @property
    def reviewer(self) -> str:
        import getpass

        if self.settings.review.reviewer:
            return self.settings.review.reviewer
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "inspector"

    def review_service(self, product: Product) -> ReviewService:
        return ReviewService(self.store, product, reviewer=self.reviewer)

    def warm_up_model_lane(self) -> None:
        """Load the model libraries on the model lane while the inspector is still looking.

        Loading torch's shared libraries holds the GIL for up to a second, which freezes
        painting; done at start-up it costs nothing, done at the first inspection it is a
        visible stall in the middle of work.
        """

        def load(_progress: object, _cancel: object) -> None:
            import torch  # noqa: F401

            import workstation.experts.pipeline  # noqa: F401

        self.model_lane.submit(load, channel="warm-up")

    def threads_running(self) -> bool:
        return self.model_lane.is_running() or self.io_lane.is_running()

    def close(self) -> None:
        """Stop both lanes at once and close the store.

        Quitting must feel instant: in-flight inference is cancelled and queued read-ahead
        dropped; only the io lane's queued edits are written first (each takes milliseconds).
        A job that cannot be interrupted (a model still loading) is waited for, with a
        warning, since a thread left running would crash the interpreter's exit.
        """
        if self._closed:
            return
        self._closed = True
        lanes = (self.model_lane, self.io_lane)
        for lane in lanes:
            lane.stop()
        for lane in lanes:
            if not lane.wait(CLOSE_WAIT_MS):
                log.warning("the %s lane is finishing a job that cannot be cancelled", lane.name)
                lane.wait()
        self.models.clear()  # the model lane has ended: nothing else can touch them now
        self.store.close()


def build_workstation(
    db: str | Path | None = None, *, settings: Settings | None = None
) -> Workstation:
    """Open the store (default: the user's) and start the lanes; call ``close()`` when done."""
    settings = settings or load_settings()
    store = Store.open(Path(db) if db else default_db_path())
    return Workstation(settings=settings, store=store, model_lane=Lane("model"), io_lane=Lane("io"))
