"""Composition root: settings, store, services and the worker lanes, built in one place.

Everything the windows need hangs off one :class:`Workstation`, so a test, a benchmark and
the real application assemble the same parts the same way, and closing it stops every
thread it started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from workstation.config import Settings, load_settings
from workstation.core.types import Product
from workstation.gui.workers import Lane
from workstation.paths import default_db_path
from workstation.services.review import ReviewService
from workstation.store.repository import Store


@dataclass
class Workstation:
    settings: Settings
    store: Store
    model_lane: Lane
    """Owns every torch object: experts, explainer (see workers.py)."""
    io_lane: Lane
    """Reads images ahead and writes every edit, in order."""
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

    def threads_running(self) -> bool:
        return self.model_lane.is_running() or self.io_lane.is_running()

    def close(self) -> None:
        """Stop the lanes (the io lane last, so queued edits are written) and close the store."""
        if self._closed:
            return
        self._closed = True
        self.model_lane.shutdown()
        self.io_lane.shutdown(60000)
        self.store.close()


def build_workstation(
    db: str | Path | None = None, *, settings: Settings | None = None
) -> Workstation:
    """Open the store (default: the user's) and start the lanes; call ``close()`` when done."""
    settings = settings or load_settings()
    store = Store.open(Path(db) if db else default_db_path())
    return Workstation(settings=settings, store=store, model_lane=Lane("model"), io_lane=Lane("io"))
