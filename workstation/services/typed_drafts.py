"""Drafts that name the learned type: the template's facts, the type head's answer, the
plant's words.

:class:`TypedExplainer` is an :class:`~workstation.explain.result.Explainer` like the
template: it measures the region the template would describe, asks the product's active
type head (with the vocabulary prior for types nobody has corrected yet), and writes the
draft with :func:`workstation.explain.drafts.learned_description`. Its revisions carry the
source ``types:<version>``, so the review window can say where the type came from. With
no active head, :func:`draft_explainer` is the template, with the product's own words
for its shape classes (:class:`PriorExplainer`, the vocabulary prior).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from workstation.core.types import LEARNED_TYPES_SOURCE, ModelVersion, Product
from workstation.experts.defect_types import DefectTypeHead, TypePrediction
from workstation.experts.regions import PatchSource, load_patch_source, region_vector
from workstation.explain import template
from workstation.explain.drafts import ReviewedExample, TypeAnswer, learned_description
from workstation.explain.prompts import ExplainRequest
from workstation.explain.regions import region_mask
from workstation.explain.result import (
    TEMPLATE_SOURCE,
    Explainer,
    ExplainResult,
    StopCheck,
    TemplateExplainer,
    TokenCallback,
    template_result,
)
from workstation.store.repository import Store

PriorFn = Callable[[template.ShapeClass], dict[str, float]]


def vocabulary_prior(vocabulary: tuple[str, ...]) -> PriorFn:
    """Shape class -> prior over ``vocabulary`` through the text encoder, computed once."""
    table: dict[template.ShapeClass, dict[str, float]] | None = None

    def prior(shape: template.ShapeClass) -> dict[str, float]:
        nonlocal table
        if table is None:
            from workstation.explain.text_encoder import text_encoder
            from workstation.explain.vocabulary import shape_prior_table

            table = shape_prior_table(vocabulary, text_encoder())
        return table.get(shape, {})

    return prior


def _region(request: ExplainRequest) -> tuple[np.ndarray, template.RegionFacts | None]:
    """The region the template describes (at the map's size) and its facts."""
    binary = region_mask(request.anomaly_map, request.mask)
    facts = template.region_facts(
        request.anomaly_map, binary, from_mask=request.mask is not None
    )
    return binary, facts


def _streamed(result: ExplainResult, on_token: TokenCallback | None) -> ExplainResult:
    """Weight-free drafts are instant: the whole text is the one streamed piece."""
    if on_token is not None:
        on_token(result.explanation.description)
    return result


def answer_of(prediction: TypePrediction) -> TypeAnswer:
    return TypeAnswer(
        defect_type=prediction.best,
        confidence=prediction.confidence,
        unsure=prediction.unsure,
        candidates=tuple(prediction.runners_up(2)),
        examples=tuple(
            ReviewedExample(
                image=n.exemplar.image,
                defect_type=n.exemplar.defect_type,
                author=n.exemplar.author,
                description=n.exemplar.description,
                similarity=n.similarity,
            )
            for n in prediction.neighbours
        ),
    )


class TypedExplainer:
    """The template's facts with the learned type and words (see the module docstring)."""

    def __init__(
        self,
        head: DefectTypeHead,
        source: PatchSource,
        *,
        version: str,
        prior: PriorFn | None = None,
    ) -> None:
        self.head = head
        self.patches = source
        self.version = version
        self.prior = prior

    @property
    def source(self) -> str:
        return f"{LEARNED_TYPES_SOURCE}:{self.version}"

    def predict(
        self, request: ExplainRequest
    ) -> tuple[TypePrediction, template.RegionFacts] | None:
        """The head's answer for the request's region, or None when there is no region."""
        binary, facts = _region(request)
        if facts is None:
            return None
        amap = request.anomaly_map
        import cv2

        full = cv2.resize(binary, request.image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        if not full.any():
            return None
        vector = region_vector(request.image, full, amap.map, amap.threshold, self.patches)
        prior = self.prior(facts.shape) if self.prior is not None else None
        return self.head.predict(vector.values, prior=prior), facts

    def explain(
        self,
        request: ExplainRequest,
        *,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ExplainResult:
        base = template_result(request)
        said = base.explanation
        answered = self.predict(request) if said.verdict == "anomalous" else None
        if answered is None:
            result = replace(base, source=self.source)
        else:
            prediction, facts = answered
            text = learned_description(answer_of(prediction), facts, said.description)
            typed = replace(
                said, defect_type="" if prediction.unsure else prediction.best, description=text
            )
            result = replace(base, explanation=typed, source=self.source)
        return _streamed(result, on_token)


class PriorExplainer:
    """No type head yet: the template, its shape class named by the product's own word.

    The template knows a few words per shape ("scratch", "crack", "pit", ...); a product
    whose vocabulary says "delamination" or "porosity" would otherwise see the shape's
    name. Here the vocabulary word nearest to the shape's description (the text encoder's
    prior) names it instead.
    """

    source = TEMPLATE_SOURCE

    def __init__(self, vocabulary: tuple[str, ...], prior: PriorFn) -> None:
        self.vocabulary = vocabulary
        self.prior = prior

    def explain(
        self,
        request: ExplainRequest,
        *,
        on_token: TokenCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ExplainResult:
        result = template_result(request)
        said = result.explanation
        if said.verdict == "anomalous" and said.defect_type not in self.vocabulary:
            facts = _region(request)[1]
            row = self.prior(facts.shape) if facts is not None else {}
            if row:
                named = max(row, key=lambda word: row[word])
                result = replace(result, explanation=replace(said, defect_type=named))
        return _streamed(result, on_token)


def active_types_version(store: Store, product: Product) -> ModelVersion | None:
    version = store.active_model_version(product.id, "types")
    return version if version is not None and version.path else None


def draft_explainer(store: Store, product: Product, *, device: str = "cpu") -> Explainer:
    """The weight-free drafter of ``product``: the learned types when a head is active."""
    version = active_types_version(store, product)
    if version is None:
        vocabulary = tuple(product.defect_vocabulary)
        if not vocabulary:
            return TemplateExplainer()
        return PriorExplainer(vocabulary, vocabulary_prior(vocabulary))
    head = DefectTypeHead.load(store.model_files(version))  # refuses changed files
    experts = store.active_model_version(product.id, "experts")
    folder = store.model_files(experts) if experts is not None and experts.path else None
    backbone = str(version.config.get("backbone", "filterbank"))
    patches = load_patch_source(folder, backbone, device=device)
    vocabulary = tuple(dict.fromkeys((*product.defect_vocabulary, *head.types)))
    return TypedExplainer(head, patches, version=version.name, prior=vocabulary_prior(vocabulary))


def redraft_unreviewed(
    store: Store,
    product: Product,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Rewrite the machine drafts of every unreviewed image with the product's drafter now
    (after a types version was promoted or rolled back): the next images the inspector
    opens already speak the new head's words. Inspector texts are never touched."""
    from workstation.services.explain import explain_image
    from workstation.services.review import MACHINE_SOURCES

    explainer = draft_explainer(store, product)
    pending = []
    for row in store.query_images(product.id, review_state="unreviewed", order_by="name"):
        latest = store.latest_explanation(row.image.id)
        if latest is not None and latest.source.split(":", 1)[0] in MACHINE_SOURCES:
            pending.append(row.image.id)
    for done, image_id in enumerate(pending, start=1):
        if cancelled is not None and cancelled():
            return done - 1  # each draft is its own revision: the ones written stay
        explain_image(store, image_id, explainer)
        if progress is not None:
            progress(done, len(pending))
    return len(pending)
