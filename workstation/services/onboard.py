"""Onboarding a product: fit and calibrate the experts on its normal images, and say how
far to trust the threshold.

A new product gets a profile (description, normality rules, defect words), a few normal
images and optionally some known defects. Fitting builds the configured experts,
calibrates them leave-one-out, stores the result as a new ``experts-N`` model version
in the store's own models folder (``<store>.models/experts-N/``) and makes it active.
The readiness note answers the question an engineer actually has: "is this threshold
trustworthy yet?", from a bootstrap of the normal shots and the order-statistic confidence.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workstation.config import ExpertSettings
from workstation.core import kinds
from workstation.core.errors import UserError
from workstation.core.imageio import LARGE_PIXELS, read_image
from workstation.core.raster import read_large
from workstation.core.types import (
    CALIBRATED_THRESHOLD,
    NORMAL_LABEL,
    ImageRecord,
    ModelVersion,
    Product,
)
from workstation.experts.base import ProgressFn, StageFn
from workstation.experts.features import working_shape
from workstation.experts.fusion import Calibration, choose_threshold
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.pool import PoolConfig, PoolExpert
from workstation.services.confirmed import confirmed_anomalies
from workstation.store.repository import Store

MAX_FIT_NORMALS = 200
"""More normals than this add little to a patch bank but cost memory and fit time."""
BOOTSTRAP_ROUNDS = 200
STABLE_SPREAD = 0.25
"""Threshold spread (fraction of the typical-to-threshold gap) considered stable."""


@dataclass(frozen=True)
class Readiness:
    normals: int
    threshold_spread: float
    """Bootstrap std of the threshold, in units of the typical-normal-to-threshold gap."""
    confidence: float
    normals_for_goal: int
    note: str


@dataclass(frozen=True)
class OnboardResult:
    product: Product
    version: ModelVersion
    calibration: Calibration
    readiness: Readiness
    defect_scores: tuple[tuple[int, float], ...]
    """(image id, calibrated score) of known defect images; > 1.0 means caught."""


def normal_images(store: Store, product: Product) -> list[ImageRecord]:
    """Known-normal references: labelled good outside the test split, plus reviewed normals.

    Test-split goods (MVTec ``test/good``) stay out of the memory bank: they are how the
    experts' false-alarm rate is measured, and an image in the bank scores ~0 against
    itself, which would make every such measurement (and the demo's summary) flattering.
    """
    records = {
        r.id: r
        for r in store.list_images(product.id, source_label=NORMAL_LABEL)
        if r.split != "test"
    }
    for review in store.list_reviews(product.id):
        if review.verdict == "normal" and review.image_id not in records:
            records[review.image_id] = store.get_image(review.image_id)
    # Train images first: they are the references the engineer chose.
    return sorted(records.values(), key=lambda r: (r.split != "train", r.id))


def pool_images(store: Store, product: Product, config: PoolConfig) -> list[ImageRecord]:
    """The pool expert's references: a seeded sample of the product's imported images that
    came without a label and nobody has reviewed (what the station has not judged yet)."""
    reviewed = {review.image_id for review in store.list_reviews(product.id)}
    records = [r for r in store.list_images(product.id, split="unlabeled") if r.id not in reviewed]
    rng = np.random.default_rng(config.seed)
    chosen = rng.permutation(len(records))[: config.references]
    return [records[i] for i in sorted(chosen)]


def active_model_path(store: Store, product: Product, kind: str) -> str | None:
    """Folder of the product's active trained model of ``kind`` (one that joins the experts),
    checked against its registered hash.

    A missing folder means no such model (the experts run without it, as before it was
    trained); a changed one raises, since silently dropping it would change the scores.
    """
    version = store.active_model_version(product.id, kind)
    if version is None or not version.path or not Path(version.path).is_dir():
        return None
    return str(store.model_files(version))


def trained_model_paths(store: Store, product: Product) -> dict[str, str]:
    """The active trained models that join the experts, by kind (``core.kinds``): part of
    what makes a fit current."""
    found = {k.name: active_model_path(store, product, k.name) for k in kinds.experts()}
    return {name: path for name, path in found.items() if path}


def readiness(calibration: Calibration, *, seed: int = 0) -> Readiness:
    """Bootstrap the calibration scores to see how much the threshold would move."""
    scores = np.asarray(calibration.calibration_scores, dtype=np.float64)
    target = calibration.threshold.target_fpr
    rng = np.random.default_rng(seed)
    if scores.size > 1:
        thresholds = [
            choose_threshold(rng.choice(scores, scores.size, replace=True), target).raw
            for _ in range(BOOTSTRAP_ROUNDS)
        ]
        spread = float(np.std(thresholds)) / calibration.unit
    else:
        spread = float("inf")
    choice = calibration.threshold
    more = max(0, choice.normals_for_goal - choice.n)
    if scores.size < 2:
        note = "one normal shot: the threshold is a rough guess; add normal images"
    elif spread > STABLE_SPREAD:
        note = (
            f"threshold unstable (moves {spread:.0%} of its margin when the shots are "
            f"resampled); add normal images"
        )
    else:
        note = f"threshold stable under resampling (spread {spread:.0%} of its margin)"
    if more:
        note += f"; about {more} more normals give 90% confidence in the false-positive rate"
    else:
        note += "; enough normals for 90% confidence in the false-positive rate"
    return Readiness(
        normals=choice.n,
        threshold_spread=spread,
        confidence=choice.confidence,
        normals_for_goal=choice.normals_for_goal,
        note=note,
    )


def fit_product(
    store: Store,
    product: Product,
    settings: ExpertSettings,
    *,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    stages: StageFn | None = None,
) -> tuple[ModelVersion, InspectionPipeline]:
    """Fit, calibrate and register a new active ``experts`` version for ``product``;
    ``stages`` hears every phase (reading, features, memory bank, calibration)."""
    records = normal_images(store, product)[:MAX_FIT_NORMALS]
    if not records:
        raise UserError(
            f"product {product.name!r} has no normal images; import some labelled good "
            "(train/good) or review images as normal, then try again"
        )
    config = PipelineConfig.from_settings(settings, trained=trained_model_paths(store, product))
    pipeline = InspectionPipeline(config, product=product, device=device)
    normals = []
    for record in records:
        normals.append(read_for_experts(store, record, settings.image_size, reduce=True))
        if stages:
            stages(len(normals), len(records), "reading normal images")
    side = fit_read_side(records[0], settings.image_size)
    anomalies = confirmed_anomalies(store, product, max_side=side)
    calibration = pipeline.fit(normals, progress=progress, stages=stages, anomalies=anomalies)
    pool = pipeline.bank_expert()
    if isinstance(pool, PoolExpert):
        pool.set_pool([read_for_experts(store, r, settings.image_size, reduce=True)
                       for r in pool_images(store, product, pool.pool_config)])
    folder = store.new_model_folder()
    try:
        pipeline.save(folder)
        parent = store.active_model_version(product.id, "experts")
        version = store.add_model_version(
            product.id,
            kind="experts",
            state="active",
            parent_id=parent.id if parent else None,
            files=folder,
            metrics={
                "normals": float(len(records)),
                "threshold_confidence": calibration.threshold.confidence,
            },
            config={
                **config.to_dict(),
                "statement": calibration.threshold.statement(),
                "fusion": pipeline.choice.summary() if pipeline.choice else None,
            },
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # gone already once registered
    # Fused scores are calibrated so that 1.0 is the decision threshold; the product's
    # threshold is what the GUI draws as the contour and "mask from heatmap" uses.
    store.update_product(product.id, threshold=CALIBRATED_THRESHOLD)
    return version, pipeline


def fit_read_side(record: ImageRecord, image_size: int) -> int:
    """Longest side to decode a normal at for fitting: twice what the working shape needs.

    The experts resize every image to their working shape anyway, so decoding 200
    full-resolution camera frames (15 MB each at 5 MP) would only cost memory; twice the
    needed side keeps the area-averaging resize as sharp as from the original.
    """
    shape = working_shape([(record.height, record.width)], image_size=image_size, multiple=1)
    return 2 * max(shape)


def read_for_experts(
    store: Store, record: ImageRecord, image_size: int, *, reduce: bool = False
) -> np.ndarray:
    """An image as the experts need it. A very large scan comes from its pyramid
    (``core.raster``), at ``fit_read_side``: decoding it whole would take gigabytes for
    pixels the experts shrink away. Others are read whole, or reduced when ``reduce``."""
    side = fit_read_side(record, image_size)
    if record.width * record.height > LARGE_PIXELS:
        return read_large(record.path, store.path, record.sha256, side)
    return read_image(record.path, max_side=side if reduce else None)


def onboard_product(
    store: Store,
    name: str,
    settings: ExpertSettings,
    *,
    description: str | None = None,
    normality_rules: Sequence[str] | None = None,
    defect_vocabulary: Sequence[str] | None = None,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    stages: StageFn | None = None,
) -> OnboardResult:
    """Create or update the product profile, fit the experts and preview known defects."""
    product = store.find_product(name)
    if product is None:
        product = store.create_product(
            name,
            description=description or "",
            normality_rules=tuple(normality_rules or ()),
            defect_vocabulary=tuple(defect_vocabulary or ()),
        )
    elif description is not None or normality_rules is not None or defect_vocabulary is not None:
        changes: dict[str, object] = {}
        if description is not None:
            changes["description"] = description
        if normality_rules is not None:
            changes["normality_rules"] = tuple(normality_rules)
        if defect_vocabulary is not None:
            changes["defect_vocabulary"] = tuple(defect_vocabulary)
        product = store.update_product(product.id, **changes)  # type: ignore[arg-type]
    with store.fit_lock(product.id, "experts"):
        version, pipeline = fit_product(
            store, product, settings, device=device, progress=progress, stages=stages
        )
    assert pipeline.calibration is not None
    defects = [
        r for r in store.list_images(product.id) if r.source_label not in (None, NORMAL_LABEL)
    ][:MAX_FIT_NORMALS]
    scores: list[tuple[int, float]] = []
    for record in defects:
        result = pipeline.predict([read_for_experts(store, record, settings.image_size)])[0]
        scores.append((record.id, result.score))
        if stages:
            stages(len(scores), len(defects), "checking known defects")
    product = store.get_product(product.id)
    return OnboardResult(
        product=product,
        version=version,
        calibration=pipeline.calibration,
        readiness=readiness(pipeline.calibration),
        defect_scores=tuple(scores),
    )
