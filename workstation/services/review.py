"""Review use cases: the queue, verdicts, mask and text corrections (no Qt).

Every call writes to the store immediately and only ever appends: a verdict is a Review
row; a repainted mask is a new mask revision whose parent is the one it replaced; an edited
explanation is a new explanation revision. The GUI is a thin view over this class, and the
same class serves tests and scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import (
    Explanation,
    ExplanationRevision,
    ImageRecord,
    MaskRevision,
    Prediction,
    Product,
    Review,
    ReviewVerdict,
    check_literal,
)
from workstation.store.rows import ImageFilter, ImageOrder, ImageRow

INSPECTOR = "inspector"
MACHINE_SOURCES: tuple[str, ...] = ("template", "vlm", "expert", "types")


@dataclass(frozen=True)
class QueueFilter:
    """The filters of the image list; None / False means "do not filter on this"."""

    unreviewed: bool = False
    predicted_anomalous: bool | None = None
    score_min: float | None = None
    score_max: float | None = None
    defect_type: str | None = None
    conflicts: bool = False
    """Only images whose stations' verdicts disagree (``iad-workstation sync``)."""

    def __post_init__(self) -> None:
        if (
            self.score_min is not None
            and self.score_max is not None
            and self.score_min > self.score_max
        ):
            raise UserError(
                f"score range is empty: minimum {self.score_min} > maximum {self.score_max}"
            )

    def store_filter(self) -> ImageFilter:
        return ImageFilter(
            review_state="unreviewed" if self.unreviewed else None,
            predicted_anomalous=self.predicted_anomalous,
            score_min=self.score_min,
            score_max=self.score_max,
            defect_type=self.defect_type or None,
            conflict=True if self.conflicts else None,
        )


@dataclass(frozen=True)
class ImageDetail:
    """What the review screen shows for one image, apart from its pixels."""

    record: ImageRecord
    prediction: Prediction | None
    anomaly_map: np.ndarray | None
    threshold: float | None
    mask: np.ndarray
    """uint8 0/1, image-sized; zeros when the image has no mask yet."""
    mask_revision: MaskRevision | None
    draft: ExplanationRevision | None
    """Newest machine-written explanation (template / VLM)."""
    edit: ExplanationRevision | None
    """Newest inspector-written explanation."""
    review: Review | None


class ReviewService:
    """Review of one product by one reviewer; see the module docstring."""

    def __init__(self, store: Any, product: Product, *, reviewer: str) -> None:
        self.store = store
        self.product = product
        self.reviewer = reviewer or INSPECTOR
        self._order: ImageOrder | None = None

    # -- the queue ---------------------------------------------------------------------------
    @property
    def order(self) -> ImageOrder:
        """By active-learning priority once a queue was computed, by score until then."""
        if self._order is None:
            first = self.store.query_images(self.product.id, order_by="priority", limit=1)
            self._order = "priority" if first and first[0].priority is not None else "score"
        return self._order

    def refresh_order(self) -> None:
        self._order = None

    def count(self, flt: QueueFilter = QueueFilter()) -> int:
        return int(self.store.count_images(self.product.id, flt.store_filter()))

    def rows(self, flt: QueueFilter, *, offset: int, limit: int) -> list[ImageRow]:
        return list(
            self.store.query_images(
                self.product.id, flt.store_filter(), order_by=self.order, limit=limit, offset=offset
            )
        )

    def progress(self) -> tuple[int, int]:
        """(reviewed, total) images of the product."""
        total = self.count()
        unreviewed = self.count(QueueFilter(unreviewed=True))
        return total - unreviewed, total

    def defect_types(self) -> tuple[str, ...]:
        return tuple(self.product.defect_vocabulary)

    # -- one image -------------------------------------------------------------------------------
    def detail(self, image_id: int) -> ImageDetail:
        store = self.store
        record = store.get_image(image_id)
        prediction = store.latest_prediction(image_id)
        anomaly_map = None
        if prediction is not None and prediction.map_blob:
            anomaly_map = np.asarray(store.load_map(prediction), dtype=np.float32)
        revision = store.latest_mask_revision(image_id)
        if revision is not None:
            mask = np.ascontiguousarray(store.load_mask(revision), dtype=np.uint8)
        else:
            mask = np.zeros((record.height, record.width), np.uint8)
        return ImageDetail(
            record=record,
            prediction=prediction,
            anomaly_map=anomaly_map,
            threshold=self.product.threshold,
            mask=mask,
            mask_revision=revision,
            draft=self._latest_machine_explanation(image_id),
            edit=store.latest_explanation(image_id, sources=(INSPECTOR,)),
            review=store.latest_review(image_id),
        )

    def _latest_machine_explanation(self, image_id: int) -> ExplanationRevision | None:
        for revision in reversed(self.store.explanation_history(image_id)):
            if revision.source.split(":", 1)[0] in MACHINE_SOURCES:
                return revision
        return None

    def reference_image(self) -> ImageRecord | None:
        """A known-normal image to show beside the one under review (first normal shot)."""
        for split in ("train", "test", "unlabeled"):
            normals = self.store.list_images(self.product.id, split=split, source_label="good")
            if normals:
                return normals[0]
        return None

    def heatmap_mask(self, detail: ImageDetail, threshold: float | None = None) -> np.ndarray:
        """The mask the heatmap proposes at ``threshold`` (default: the product's)."""
        from workstation.core.masks import mask_from_map

        if detail.anomaly_map is None:
            raise UserError("this image has no heatmap yet; run inspection first")
        level = threshold if threshold is not None else detail.threshold
        if level is None:
            raise UserError("the product has no threshold yet; finish onboarding first")
        anomaly_map = detail.anomaly_map
        if anomaly_map.shape != detail.mask.shape:
            import cv2

            h, w = detail.mask.shape
            anomaly_map = cv2.resize(anomaly_map, (w, h), interpolation=cv2.INTER_LINEAR)
        return mask_from_map(anomaly_map, level)

    # -- writes ------------------------------------------------------------------------------------
    def review(self, image_id: int, verdict: ReviewVerdict, *, reason: str = "") -> Review:
        """Record a verdict; "normal" and "anomalous" also correct the mask / text to agree."""
        check_literal(verdict, ReviewVerdict, "verdict")
        prediction = self.store.latest_prediction(image_id)
        version = prediction.model_version if prediction else None
        if verdict == "normal":
            self._clear_mask(image_id)
            self._set_explanation_verdict(image_id, "normal")
        elif verdict == "anomalous":
            self._set_explanation_verdict(image_id, "anomalous")
        return self.store.add_review(
            image_id, verdict, reviewer=self.reviewer, reason=reason, model_version=version
        )

    def _clear_mask(self, image_id: int) -> None:
        revision = self.store.latest_mask_revision(image_id)
        if revision is not None and np.any(self.store.load_mask(revision)):
            record = self.store.get_image(image_id)
            self.save_mask(image_id, np.zeros((record.height, record.width), np.uint8))

    def _set_explanation_verdict(
        self, image_id: int, verdict: Literal["normal", "anomalous"]
    ) -> None:
        latest = self.store.latest_explanation(image_id)
        if latest is not None and latest.explanation.verdict == verdict:
            return
        if verdict == "normal":
            explanation = Explanation(verdict="normal")
        elif latest is not None:
            old = latest.explanation
            explanation = Explanation(
                verdict="anomalous",
                defect_type=old.defect_type,
                location=old.location,
                severity=old.severity,
                description=old.description,
            )
        else:
            explanation = Explanation(verdict="anomalous")
        self.save_explanation(image_id, explanation)

    def save_mask(self, image_id: int, mask: np.ndarray) -> MaskRevision:
        """Append the inspector's mask as a new revision on top of the newest one."""
        record = self.store.get_image(image_id)
        if mask.shape != (record.height, record.width):
            raise UserError(
                f"mask is {mask.shape[1]}x{mask.shape[0]} but image {record.name} is "
                f"{record.width}x{record.height}"
            )
        parent = self.store.latest_mask_revision(image_id)
        return self.store.add_mask_revision(
            image_id,
            (np.asarray(mask) > 0).astype(np.uint8),
            source=INSPECTOR,
            author=self.reviewer,
            parent_id=parent.id if parent else None,
            model_version=parent.model_version if parent else None,
        )

    def save_explanation(self, image_id: int, explanation: Explanation) -> ExplanationRevision:
        """Append the inspector's text as a new revision; an unchanged text writes nothing."""
        parent = self.store.latest_explanation(image_id)
        if parent is not None and parent.explanation == explanation and parent.source == INSPECTOR:
            return parent
        return self.store.add_explanation(
            image_id,
            explanation,
            source=INSPECTOR,
            author=self.reviewer,
            parent_id=parent.id if parent else None,
            model_version=parent.model_version if parent else None,
        )
