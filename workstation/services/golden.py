"""The golden set and what each model version scored on it: the gate's view, plotted.

The golden set is what the promotion gate judges a new version on (``training.evaluate``):
images an engineer marked golden (``store.mark_golden``) and inspector corrections made
before the product's last successful round (``services.rounds``). For each model version
that scored them, :func:`golden_metrics` gives image AUROC, recall at the product's
threshold and the false-alarm rate there, from the scores stored when the version ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workstation.core.metrics import auroc
from workstation.core.types import Product
from workstation.store.repository import Store

DECISIVE = ("accepted", "normal", "anomalous")
CORRECTIONS = ("normal", "anomalous")
ROUND_KINDS = ("adapter", "selftaught", "vlm")


@dataclass(frozen=True)
class GoldenMetrics:
    version: str
    normals: int
    defects: int
    auroc: float | None
    """None without both classes."""
    recall: float | None
    """Defects at or above the threshold / defects; None without defects."""
    false_alarm_rate: float | None
    """Normals at or above the threshold / normals; None without normals."""


def _last_round_start(store: Store, product: Product) -> str | None:
    done = [r.started_at for r in store.list_rounds(product.id) if r.status == "succeeded"]
    return max(done) if done else None


def golden_set(store: Store, product: Product) -> dict[int, bool]:
    """``{image id: is a defect}`` of the product's golden images (module docstring)."""
    marked = store.golden_image_ids(product.id)
    since = _last_round_start(store, product)
    out: dict[int, bool] = {}
    for row in store.query_images(product.id, review_state="reviewed", order_by="name"):
        verdict = row.review_verdict
        review = store.latest_review(row.image.id)
        corrected = (
            review is not None
            and verdict in CORRECTIONS
            and since is not None
            and review.created_at < since
        )
        if row.image.id in marked or corrected:
            out[row.image.id] = verdict == "anomalous" or (
                verdict == "accepted" and bool(row.anomalous)
            )
    return out


def reviewed_not_golden(store: Store, product: Product) -> list[int]:
    """Decisively reviewed images that are not golden yet (what "mark golden" would add)."""
    golden = golden_set(store, product)
    return [
        row.image.id
        for row in store.query_images(product.id, review_state="reviewed", order_by="name")
        if row.review_verdict in DECISIVE and row.image.id not in golden
    ]


def golden_metrics(store: Store, product: Product) -> list[GoldenMetrics]:
    """Per model version that scored golden images, oldest version first."""
    golden = golden_set(store, product)
    if not golden:
        return []
    threshold = product.decision_threshold
    order = {v.name: i for i, v in enumerate(store.list_model_versions(product.id))}
    out = []
    for version, scores in store.scores_by_version(list(golden)).items():
        ids = sorted(scores)
        labels = np.asarray([golden[i] for i in ids], dtype=bool)
        values = np.asarray([scores[i] for i in ids], dtype=np.float64)
        flagged = values >= threshold
        defects, normals = int(labels.sum()), int((~labels).sum())
        out.append(
            GoldenMetrics(
                version=version,
                normals=normals,
                defects=defects,
                auroc=float(auroc(labels, values)) if defects and normals else None,
                recall=float(flagged[labels].mean()) if defects else None,
                false_alarm_rate=float(flagged[~labels].mean()) if normals else None,
            )
        )
    return sorted(out, key=lambda m: (order.get(m.version, len(order)), m.version))
