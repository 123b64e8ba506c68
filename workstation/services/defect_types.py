"""The ``types`` kind on the app side: reviewed defects -> round manifest, and word search.

A types sample is a reviewed defect: the final mask (the inspector's, or the one accepted),
the type the review settled on (an inspector's free-text type mapped onto the product's
vocabulary when it means one of its words), the inspector's own text when they wrote one
(machine drafts are never quoted back as the plant's words), who reviewed it, and the
stored anomaly map. The held-out share is drawn per type, so every type keeps examples to
learn from; no sample is golden, because type corrections are what the head learns from.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.contract import ContractError, RoundExtras, RoundManifest, Sample, check_feedback
from workstation.core.errors import UserError
from workstation.core.types import Product
from workstation.store.repository import Store

if TYPE_CHECKING:
    from workstation.explain.text_encoder import TextEncoder
    from workstation.services.rounds import RoundOptions

INSPECTOR_SOURCES = ("inspector", "ground_truth")


class VocabularyMapper:
    """Free-text types onto the product's words; the text encoder loads on first need."""

    def __init__(self, vocabulary: tuple[str, ...], encoder: TextEncoder | None = None) -> None:
        self.vocabulary = vocabulary
        self._encoder = encoder

    def __call__(self, text: str) -> str:
        from workstation.explain.text_encoder import normalise_words, text_encoder
        from workstation.explain.vocabulary import match_vocabulary

        if not text or text in self.vocabulary:
            return text
        if self._encoder is None:
            self._encoder = text_encoder()
        match = match_vocabulary(text, self.vocabulary, self._encoder)
        return match.word if match.word is not None else normalise_words(text)


def collect_type_samples(
    store: Store, product: Product, round_dir: Path, mapper: VocabularyMapper | None = None
) -> list[Sample]:
    """One sample per reviewed defect that has a mask and a type (see the module docstring)."""
    mapper = mapper or VocabularyMapper(tuple(product.defect_vocabulary))
    samples = []
    for row in store.query_images(product.id, review_state="reviewed", order_by="name"):
        image_id = row.image.id
        review = store.latest_review(image_id)
        if review is None or review.verdict not in ("accepted", "anomalous"):
            continue
        if review.verdict == "accepted" and not row.anomalous:
            continue
        sources = None if review.verdict == "accepted" else INSPECTOR_SOURCES
        revision = store.latest_mask_revision(image_id, sources=sources)
        explanation = store.latest_explanation(image_id)
        if revision is None or explanation is None:
            continue
        mask = store.load_mask(revision)
        defect_type = mapper(explanation.explanation.defect_type.strip())
        if not mask.any() or not defect_type:
            continue
        (round_dir / "masks").mkdir(parents=True, exist_ok=True)
        mask_path = round_dir / "masks" / f"{image_id}.npy"
        np.save(mask_path, mask)
        map_path = None
        prediction = store.latest_prediction(image_id)
        if prediction is not None and prediction.map_blob:
            (round_dir / "maps").mkdir(parents=True, exist_ok=True)
            map_path = round_dir / "maps" / f"{image_id}.npy"
            np.save(map_path, np.asarray(store.load_map(prediction), np.float32))
        said = explanation.explanation
        words = said.description if explanation.source == "inspector" else ""
        samples.append(
            Sample(
                image_path=row.image.path,
                label="anomalous",
                image_id=image_id,
                mask_path=str(mask_path),
                map_path=None if map_path is None else str(map_path),
                author=review.reviewer,
                explanation=said.to_dict() | {"defect_type": defect_type, "description": words},
            )
        )
    return samples


def split_by_type(
    samples: list[Sample], *, holdout_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Hold out about ``holdout_fraction`` of each type, always keeping one to learn from."""
    rng = np.random.default_rng(seed)
    train: list[Sample] = []
    held: list[Sample] = []
    types = sorted({str((s.explanation or {}).get("defect_type")) for s in samples})
    for kind in types:
        group = [s for s in samples if (s.explanation or {}).get("defect_type") == kind]
        order = rng.permutation(len(group))
        n_held = min(round(len(group) * holdout_fraction), len(group) - 1)
        held += [group[i] for i in order[:n_held]]
        train += [group[i] for i in order[n_held:]]
    return train, held


def build_types_manifest(
    store: Store, product: Product, options: RoundOptions, round_dir: Path
) -> RoundManifest:
    """The manifest of a types round; UserError when the reviews cannot teach types yet."""
    samples = collect_type_samples(store, product, round_dir)
    train, held = split_by_type(
        samples, holdout_fraction=options.holdout_fraction, seed=options.seed
    )
    try:
        check_feedback("types", train)
    except ContractError as exc:
        shutil.rmtree(round_dir, ignore_errors=True)
        raise UserError(f"no types round for {product.name!r}: {exc}") from None
    experts = store.active_model_version(product.id, "experts")
    parent = store.active_model_version(product.id, "types")
    extras = RoundExtras(
        regression_tolerance=options.regression_tolerance,
        decision_threshold=product.decision_threshold,
        experts=str(store.model_files(experts)) if experts is not None and experts.path else None,
        parent=str(store.model_files(parent)) if parent is not None and parent.path else None,
    )
    return RoundManifest(
        product=product.name,
        kind="types",
        backbone=options.backbone,
        base_model="",
        train=tuple(train),
        held_out=tuple(held),
        hyperparameters=asdict(options.hyperparameters),
        extras=extras,
        seed=options.seed,
        image_size=options.image_size,
        product_context={
            "description": product.description,
            "defect_vocabulary": list(product.defect_vocabulary),
        },
    )


@dataclass(frozen=True)
class SearchResult:
    image_id: int
    name: str
    defect_type: str
    description: str
    similarity: float


def search_reviewed(
    store: Store,
    product: Product,
    query: str,
    *,
    encoder: TextEncoder | None = None,
    limit: int = 20,
) -> list[SearchResult]:
    """Reviewed images whose type and text are nearest to ``query`` (words, not spelling,
    when the real text encoder is installed)."""
    from workstation.explain.text_encoder import text_encoder
    from workstation.explain.vocabulary import search

    found: dict[int, tuple[str, str, str]] = {}
    for row in store.query_images(product.id, review_state="reviewed", order_by="name"):
        latest = store.latest_explanation(row.image.id)
        if latest is None or latest.explanation.verdict != "anomalous":
            continue
        said = latest.explanation
        found[row.image.id] = (row.image.name, said.defect_type, said.description)
    documents = [(i, f"{t}. {d}") for i, (_, t, d) in found.items()]
    hits = search(query, documents, encoder or text_encoder(), limit=limit)
    return [
        SearchResult(h.key, found[h.key][0], found[h.key][1], found[h.key][2], h.similarity)
        for h in hits
    ]
