"""The review window's model-lane jobs: scoring new images and redrafting an explanation.

Split from :class:`~workstation.gui.review_controller.ReviewController` by job: these run
on the model lane (the only thread that touches torch objects), report progress and can be
cancelled; the controller reads and writes the store on the io lane.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from workstation.config import ExpertSettings, ExplainerSettings
from workstation.core.errors import CancelledError
from workstation.gui.workers import CancelToken, ProgressFn, exclusive_model_job
from workstation.services import model_jobs

if TYPE_CHECKING:
    from workstation.gui.review_controller import ReviewController
    from workstation.services.explain import StoredExplanation
    from workstation.services.triage import TriageReport


class ReviewModelJobs:
    """Inspection and redrafting for the controller's product and shown image."""

    def __init__(
        self, controller: ReviewController, explainer_settings: Callable[[], ExplainerSettings]
    ) -> None:
        self.controller = controller
        self._explainer_settings = explainer_settings

    def inspect_new(
        self,
        expert_settings: ExpertSettings,
        device_preference: str,
        *,
        on_progress: Callable[[int, int, str], None],
        on_done: Callable[[str], None],
    ) -> None:
        """Score every image the active experts have not seen yet (model lane, cancellable)."""
        c = self.controller
        if c.service is None:
            return
        store, name = c.service.store, c.service.product.name

        def job(progress: ProgressFn, cancel: CancelToken) -> TriageReport:
            return model_jobs.inspect_new(
                store,
                name,
                expert_settings,
                device_preference=device_preference,
                cancel=cancel.event,
                progress=progress,
            )

        def done(report: TriageReport) -> None:
            c.scores_changed()
            on_done(report.summary())

        def failed(exc: BaseException) -> None:
            if isinstance(exc, CancelledError):
                on_done("inspection cancelled")
            else:
                on_done(c.report_failure("inspection failed", exc))

        c.model_lane.submit(
            exclusive_model_job(c.models, job),
            channel="inspect",
            on_result=done,
            on_error=failed,
            on_progress=on_progress,
        )

    def redraft(self) -> None:
        """Have the explainer write a new draft for the shown image, streaming into the panel."""
        c = self.controller
        if c.current is None or c.service is None:
            return
        store, product = c.service.store, c.service.product
        image_id = c.current.content.image_id
        settings = self._explainer_settings()
        models = c.models

        def job(progress: ProgressFn, cancel: CancelToken) -> StoredExplanation:
            return model_jobs.redraft(
                store,
                product,
                image_id,
                settings,
                models=models,
                on_token=lambda token: progress(0, 0, token),
                should_stop=lambda: cancel.cancelled,
            )

        def shown() -> bool:
            return c.current is not None and c.current.content.image_id == image_id

        def streamed(_done: int, _total: int, token: str) -> None:
            if shown():
                c.panel.append_draft_text(token)

        def done(stored: StoredExplanation) -> None:
            c.session.forget(image_id)
            if shown():
                c.panel.flush()
                c.panel.show_draft(stored.revision)
            c.message.emit(f"new draft from {stored.revision.source}")

        c.panel.start_draft()
        c.model_lane.submit(
            job,
            channel="explain",
            image_id=image_id,
            on_result=done,
            on_error=lambda exc: c.message.emit(f"explainer: {exc}"),
            on_progress=streamed,
        )
