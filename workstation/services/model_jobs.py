"""The use cases the review window runs on its model lane, as typed functions without Qt.

The GUI only wraps these in lane jobs (progress, cancel, result delivery); what a job does
lives here, so it is tested without a window, and the controller never imports a service
inside a function with untyped arguments to reach it.

The window imports this module at start-up, so the services behind each job (experts,
explainer, queue: about 0.1 s of imports on an idle machine) are imported when the job
runs on the model lane, which loads them anyway at warm-up, and not on the GUI thread
before the first window shows.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workstation.config import ExpertSettings, ExplainerSettings
from workstation.core.errors import CancelledError
from workstation.core.imageio import image_size
from workstation.core.types import NORMAL_LABEL, Product, Split
from workstation.model_cache import ModelCache
from workstation.store.repository import Store

if TYPE_CHECKING:
    from workstation.services.explain import StoredExplanation
    from workstation.services.onboard import OnboardResult
    from workstation.services.triage import Progress, TriageReport


def inspect_new(
    store: Store,
    product_name: str,
    settings: ExpertSettings,
    *,
    device_preference: str,
    cancel: threading.Event,
    progress: Progress,
) -> TriageReport:
    """Score every image the active experts have not seen yet, draft and queue them."""
    from workstation.device import resolve_device
    from workstation.services.triage import triage_product

    return triage_product(
        store,
        product_name,
        settings,
        device=resolve_device(device_preference),
        cancel=cancel,
        progress=progress,
    )


def redraft(
    store: Store,
    product: Product,
    image_id: int,
    settings: ExplainerSettings,
    *,
    models: ModelCache,
    on_token: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> StoredExplanation:
    """Have the product's explainer write a new draft for one image, token by token."""
    from workstation.services.explain import create_product_explainer, explain_image

    # asked for per job and kept in no attribute, so unloading really frees it; a new
    # active type head is a new drafter (kind: types)
    types = store.active_model_version(product.id, "types")
    explainer = models.get(
        f"explainer:{product.id}:{settings!r}:{types.name if types else ''}",
        lambda: create_product_explainer(store, product, settings),
    )
    return explain_image(store, image_id, explainer, on_token=on_token, should_stop=should_stop)


def redraft_unreviewed(
    store: Store,
    product: Product,
    *,
    progress: Callable[[int, int], None],
    cancelled: Callable[[], bool],
) -> int:
    """Rewrite the unreviewed images' machine drafts (a type head changed: kind types)."""
    from workstation.services.typed_drafts import redraft_unreviewed as rewrite

    return rewrite(store, product, progress=progress, cancelled=cancelled)


@dataclass(frozen=True)
class OnboardRequest:
    """What the onboarding wizard collected: the product's words and its example files."""

    name: str
    description: str
    normality_rules: tuple[str, ...]
    defect_vocabulary: tuple[str, ...]
    normal_paths: tuple[Path, ...]
    defect_paths: tuple[Path, ...]


@dataclass(frozen=True)
class ShotScore:
    """One example file as the fitted experts scored it."""

    path: str
    score: float
    anomalous: bool
    is_reference: bool
    """A normal shot (train split) rather than a defect example."""


ONBOARD_BATCH = 2
"""Images scored per progress report while onboarding: the nearest-neighbour search, not
the batch, sets the pace, and a report every 8 images left the page silent for 20 s."""


@dataclass(frozen=True)
class OnboardFit:
    result: OnboardResult
    shots: tuple[ShotScore, ...]
    note: str
    """The readiness note and the threshold statement, one per line."""


def _import_shots(
    store: Store, product: Product, request: OnboardRequest, progress: Progress
) -> list[int]:
    """Add the chosen files to the store: normals as train/good, defects as test/<defect>."""
    defect_label = request.defect_vocabulary[0] if request.defect_vocabulary else "defect"
    shots: list[tuple[Path, Split, str]]
    shots = [(p, "train", NORMAL_LABEL) for p in request.normal_paths]
    shots += [(p, "test", defect_label) for p in request.defect_paths]
    ids = []
    for i, (path, split, label) in enumerate(shots):
        progress(i, len(shots), "importing the images")
        width, height = image_size(path)
        record, _ = store.add_image(
            product.id,
            path=str(Path(path).absolute()),
            sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            width=width,
            height=height,
            split=split,
            source_label=label,
        )
        ids.append(record.id)
    progress(len(shots), len(shots), "importing the images")
    return ids


def onboard_from_files(
    store: Store,
    request: OnboardRequest,
    settings: ExpertSettings,
    *,
    device_preference: str,
    cancel: threading.Event,
    progress: Progress,
) -> OnboardFit:
    """Create the product, import the shots, fit (``onboard_product``) and score every shot
    (``triage_product``), so the review window opens with heatmaps, drafts and a queue."""
    from workstation.services.onboard import onboard_product
    from workstation.services.phases import PhaseClock
    from workstation.services.triage import triage_product

    clock = PhaseClock(progress)

    def stage(done: int, total: int, phase: str) -> None:
        """Every phase reports, and each report is a point where cancel takes effect."""
        if cancel.is_set():
            raise CancelledError()
        clock(done, total, phase)

    stage(0, 0, "loading the inspection libraries")  # torch: seconds on a busy machine
    from workstation.device import resolve_device

    device = resolve_device(device_preference)
    product = store.find_product(request.name) or store.create_product(
        request.name,
        description=request.description,
        normality_rules=request.normality_rules,
        defect_vocabulary=request.defect_vocabulary,
    )
    ids = _import_shots(store, product, request, stage)
    result = onboard_product(
        store,
        request.name,
        settings,
        description=request.description,
        normality_rules=request.normality_rules,
        defect_vocabulary=request.defect_vocabulary,
        device=device,
        stages=stage,
    )
    if cancel.is_set():
        raise CancelledError()
    triage_product(
        store,
        request.name,
        settings,
        device=device,
        cancel=cancel,
        batch_size=ONBOARD_BATCH,
        progress=lambda done, total, what: stage(done, total, f"{what} the images"),
    )
    shots = []
    for image_id in ids:
        if cancel.is_set():
            raise CancelledError()
        record = store.get_image(image_id)
        prediction = store.latest_prediction(image_id)
        if prediction is None:
            continue
        shots.append(
            ShotScore(
                path=record.path,
                score=float(prediction.score),
                anomalous=bool(prediction.anomalous),
                is_reference=record.split == "train",
            )
        )
    statement = str(result.version.config.get("statement", ""))
    note = "\n".join(text for text in (result.readiness.note, statement) if text)
    return OnboardFit(result, tuple(shots), note)
