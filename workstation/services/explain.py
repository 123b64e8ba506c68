"""Explaining stored images: pick the explainer, gather its inputs, save the revision.

Synchronous and Qt-free: the GUI runs these calls on its model lane, the CLI and tests
call them directly. The VLM (and its adapter) is chosen per product from the settings and
the product's active ``vlm`` model version; every explanation is stored as a new revision
whose source says who wrote it (``template`` or ``vlm:<version>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workstation.config import ExplainerSettings
from workstation.core.errors import UserError
from workstation.core.imageio import read_image
from workstation.core.types import (
    NORMAL_LABEL,
    AnomalyMap,
    ExplanationRevision,
    Prediction,
    Product,
)
from workstation.explain.cache import ResultCache
from workstation.explain.prompts import ExplainRequest
from workstation.explain.result import (
    TEMPLATE_SOURCE,
    Explainer,
    ExplainResult,
    StopCheck,
    TemplateExplainer,
    TokenCallback,
)
from workstation.paths import user_data_dir
from workstation.services.large_scoring import read_for_review
from workstation.store.repository import Store

EXPLAINER_AUTHOR = "explainer"


def explanation_cache_dir() -> Path:
    return user_data_dir() / "cache" / "explanations"


def vlm_name(settings: ExplainerSettings) -> str | None:
    """The VLM the settings ask for, or None for the template explainer.

    ``kind`` is ``template``, ``vlm`` (use ``settings.vlm``) or itself a model name.
    """
    if settings.kind == "template":
        return None
    return settings.vlm if settings.kind == "vlm" else settings.kind


def create_explainer(
    settings: ExplainerSettings,
    *,
    device: str = "auto",
    adapter: Path | str | None = None,
    version: str | None = None,
    cache_dir: Path | None = None,
) -> Explainer:
    """The explainer the settings name; loading a VLM happens here (seconds to minutes).

    ``adapter`` + ``version`` attach a LoRA adapter trained by a VLM round.
    """
    name = vlm_name(settings)
    if name is None:
        return TemplateExplainer()
    from workstation.explain.prompts import PromptOptions
    from workstation.explain.vlm import VlmExplainer

    return VlmExplainer.load(
        name,
        adapter=adapter,
        version=version,
        device=device,
        max_new_tokens=settings.max_new_tokens,
        options=PromptOptions(
            image_side=settings.image_side,
            crop_side=max(settings.image_side // 2, 28),
            max_crops=settings.max_crops,
            use_reference=settings.use_reference_image,
        ),
        cache=ResultCache(folder=cache_dir or explanation_cache_dir()),
    )


def create_product_explainer(
    store: Store, product: Product, settings: ExplainerSettings, *, device: str = "auto"
) -> Explainer:
    """Like :func:`create_explainer`, with the product's active VLM adapter when it has one;
    without a VLM, the product's weight-free drafter (learned types when trained)."""
    if vlm_name(settings) is None:
        from workstation.services.typed_drafts import draft_explainer

        return draft_explainer(store, product, device="cpu" if device == "auto" else device)
    active = store.active_model_version(product.id, "vlm")
    if active is None or active.path is None:
        return create_explainer(settings, device=device)
    adapter = str(store.model_files(active))  # refuses a changed or missing adapter
    return create_explainer(settings, device=device, adapter=adapter, version=active.name)


@dataclass(frozen=True)
class StoredExplanation:
    result: ExplainResult
    revision: ExplanationRevision


def _reference_image(store: Store, product: Product) -> np.ndarray | None:
    """The first readable normal shot (train split), else any image labelled good."""
    candidates = store.list_images(product.id, split="train") + store.list_images(
        product.id, source_label=NORMAL_LABEL
    )
    for record in candidates:
        if Path(record.path).is_file():
            return read_image(record.path)
    return None


def build_request(
    store: Store,
    image_id: int,
    *,
    prediction: Prediction | None = None,
    with_reference: bool = True,
) -> ExplainRequest:
    """The explainer's inputs for a stored image: pixels, its map, product, mask, reference.

    The inspector's latest painted mask (if any) replaces the thresholded map, so an
    explanation written after a correction describes the corrected region. Stored maps are
    in the product's threshold units (fused experts: 1.0 is the threshold).
    """
    record = store.get_image(image_id)
    product = store.get_product(record.product_id)
    prediction = prediction or store.latest_prediction(image_id)
    if prediction is None:
        raise UserError(
            f"image {record.name} has no anomaly map yet; run `iad-workstation inspect` "
            "on the product first"
        )
    values = store.load_map(prediction)
    anomaly_map = AnomalyMap(values, score=prediction.score, threshold=product.decision_threshold)
    mask_revision = store.latest_mask_revision(image_id, sources=("inspector",))
    mask = store.load_mask(mask_revision) if mask_revision is not None else None
    image = read_for_review(store, record)
    reference = _reference_image(store, product) if with_reference else None
    return ExplainRequest(
        image=image, anomaly_map=anomaly_map, product=product, mask=mask, reference=reference
    )


def explain_image(
    store: Store,
    image_id: int,
    explainer: Explainer,
    *,
    author: str = EXPLAINER_AUTHOR,
    on_token: TokenCallback | None = None,
    should_stop: StopCheck | None = None,
) -> StoredExplanation:
    """Explain one stored image and save the explanation as a new revision."""
    prediction = store.latest_prediction(image_id)
    # only a VLM looks at a reference image, so do not read one for the others
    with_reference = explainer.source.split(":", 1)[0] == "vlm"
    request = build_request(store, image_id, prediction=prediction, with_reference=with_reference)
    result = explainer.explain(request, on_token=on_token, should_stop=should_stop)
    if result.source == TEMPLATE_SOURCE:
        model_version = prediction.model_version if prediction is not None else None
    else:
        model_version = result.source.split(":", 1)[1]
    parent = store.latest_explanation(image_id)
    revision = store.add_explanation(
        image_id,
        result.explanation,
        source=result.source,
        author=author,
        parent_id=parent.id if parent is not None else None,
        model_version=model_version,
    )
    return StoredExplanation(result=result, revision=revision)
