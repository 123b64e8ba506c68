"""One inspection pass as an inspector expects to find it: scored, drafted, queued.

Scoring alone leaves the review window with numbers but no words and no order. After the
experts run, every newly predicted image gets a template draft (weight-free, ~1 ms; a VLM
draft is written on demand in the GUI because it costs seconds) and the active-learning
queue is recomputed, so the next image shown is the most informative one. With an active
type head the drafts name the learned type (``typed_drafts``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from workstation.active.queue import refresh_queue
from workstation.config import ExpertSettings
from workstation.core.errors import CancelledError
from workstation.services.explain import explain_image
from workstation.services.inspect import DEFAULT_BATCH, InspectReport, inspect_product
from workstation.services.typed_drafts import draft_explainer
from workstation.store.repository import Store

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class TriageReport:
    inspection: InspectReport
    drafted: int
    queued: int

    def summary(self) -> str:
        report = self.inspection
        return (
            f"{report.predicted} image(s) scored with {report.model_version} "
            f"({report.anomalous} anomalous, {len(report.failed)} unreadable), "
            f"{self.drafted} draft(s) written, {self.queued} image(s) queued"
        )


def triage_product(
    store: Store,
    product_name: str,
    settings: ExpertSettings,
    *,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH,
    refit: bool = False,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> TriageReport:
    """Score what is new, draft an explanation for each image without one, refresh the queue."""

    def report(stage: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(done, total, stage))

    inspection = inspect_product(
        store,
        product_name,
        settings,
        device=device,
        batch_size=batch_size,
        refit=refit,
        cancel=cancel,
        progress=report("scoring"),
        tile_progress=report("scoring a large image in tiles"),
    )
    product = store.get_product(product_name)
    predicted = store.predicted_image_ids(product.id, inspection.model_version)
    undrafted = [
        image_id for image_id in sorted(predicted) if store.latest_explanation(image_id) is None
    ]
    explainer = draft_explainer(store, product, device=device)
    drafting = report("drafting")
    for done, image_id in enumerate(undrafted, start=1):
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"drafting explanations for {product.name} cancelled")
        explain_image(store, image_id, explainer)
        if drafting:
            drafting(done, len(undrafted))
    queue = refresh_queue(store, product.id)
    return TriageReport(
        inspection=inspection, drafted=len(undrafted), queued=len(queue.priorities)
    )
