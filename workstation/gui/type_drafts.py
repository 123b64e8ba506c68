"""Keeps the unreviewed drafts in the words of the product's active type head (issue 22).

When the Models dock promotes or rolls back a ``types`` version, the unreviewed images'
machine drafts are rewritten on the model lane (``model_jobs.redraft_unreviewed``), then the
review list is read again, so the Defect column and filter follow the head in use. A
round's own promotion already rewrote them in the rounds lane (``services.rounds``).
"""

from __future__ import annotations

from collections.abc import Callable

from workstation.core.types import Product
from workstation.gui.review_controller import ReviewController
from workstation.gui.workers import CancelToken, ProgressFn
from workstation.services import model_jobs


class TypeDraftsFollower:
    """Remembers which type head the drafts speak for and rewrites them when it changes."""

    def __init__(self, controller: ReviewController, on_done: Callable[[str], None]) -> None:
        self.controller = controller
        self.on_done = on_done
        self.drafting: str | None = None

    def _active(self, product: Product) -> str | None:
        service = self.controller.service
        if service is None:
            return None
        active = service.store.active_model_version(product.id, "types")
        return active.name if active else None

    def opened(self, product: Product) -> None:
        self.drafting = self._active(product)

    def versions_changed(self, product: Product) -> None:
        name = self._active(product)
        if name == self.drafting or self.controller.service is None:
            return
        self.drafting = name
        store, lane = self.controller.service.store, self.controller.model_lane

        def job(progress: ProgressFn, cancel: CancelToken) -> int:
            return model_jobs.redraft_unreviewed(
                store,
                product,
                progress=lambda done, total: progress(done, total, "rewriting drafts"),
                cancelled=lambda: cancel.cancelled,
            )

        def done(count: int) -> None:
            self.controller.scores_changed()
            self.on_done(f"{count} draft(s) rewritten with the product's drafter")

        lane.submit(
            job,
            channel="redraft-unreviewed",
            on_result=done,
            on_error=lambda exc: self.on_done(f"rewriting drafts failed: {exc}"),
        )
