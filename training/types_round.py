"""One types round: reviewed defects -> region vectors -> type head -> held-out judgement.

"Before" is what the inspector has now: the active head (refitted without the held-out
images, so it is not judged on answers it memorised), or the template's shape rules when
no head is active. "After" is the new head fitted on the train side. Both name the type
of every held-out defect; type accuracy and macro-F1 go to the common gate
(``training.evaluate``). With nothing held out (one example per type) a first head is
promoted unjudged, since there is no earlier head to regress from, and a later one stays
a candidate. The saved head then learns from every reviewed defect (``refit_on_all``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.contract import ProgressEvent, RoundManifest, Sample
from training.evaluate import gated_result
from training.kinds.types import TypesHyperparameters, check_feedback, sample_type
from workstation.core.imageio import read_image
from workstation.core.types import AnomalyMap, Product
from workstation.experts.defect_types import DefectTypeHead, Exemplar
from workstation.experts.regions import PatchSource, load_patch_source, region_vector
from workstation.explain import template

Emit = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class TypedRegion:
    """One reviewed defect as a round sees it."""

    sample: Sample
    vector: np.ndarray
    groups: tuple[tuple[str, int], ...]
    template_type: str

    @property
    def defect_type(self) -> str:
        return sample_type(self.sample)

    def exemplar(self) -> Exemplar:
        explanation = self.sample.explanation or {}
        path = Path(self.sample.image_path)
        return Exemplar(
            defect_type=self.defect_type,
            image=f"{path.parent.name}/{path.name}",
            author=self.sample.author,
            description=str(explanation.get("description", "")),
            location=str(explanation.get("location", "")),
            severity=str(explanation.get("severity", "low")),
            image_id=self.sample.image_id,
        )


def usable(samples: Sequence[Sample]) -> list[Sample]:
    return [
        s for s in samples if s.label == "anomalous" and s.mask_path is not None and sample_type(s)
    ]


def typed_region(
    sample: Sample, source: PatchSource, *, threshold: float | None, vocabulary: tuple[str, ...]
) -> TypedRegion:
    """Read one sample's image, mask and map, and measure its region."""
    image = read_image(sample.image_path)
    mask = np.load(str(sample.mask_path), allow_pickle=False)
    values = None if sample.map_path is None else np.load(sample.map_path, allow_pickle=False)
    vector = region_vector(image, mask, values, threshold, source)
    shown = values if values is not None else mask.astype(np.float32)
    amap = AnomalyMap(shown, score=float(np.max(shown)), threshold=threshold)
    product = Product(id=0, name="product", defect_vocabulary=vocabulary)
    said = template.explain(amap, mask=mask, product=product).defect_type
    return TypedRegion(sample, vector.values, vector.groups, said)


def type_scores(truth: Sequence[str], said: Sequence[str], prefix: str) -> dict[str, float]:
    """Accuracy and macro-F1 (over the types present in ``truth``)."""
    if not truth:
        return {}
    hits = [t == s for t, s in zip(truth, said, strict=True)]
    f1s = []
    for kind in sorted(set(truth)):
        tp = sum(t == kind and s == kind for t, s in zip(truth, said, strict=True))
        fp = sum(t != kind and s == kind for t, s in zip(truth, said, strict=True))
        fn = sum(t == kind and s != kind for t, s in zip(truth, said, strict=True))
        f1s.append(2 * tp / max(2 * tp + fp + fn, 1))
    return {
        f"{prefix}type_accuracy": float(np.mean(hits)),
        f"{prefix}type_macro_f1": float(np.mean(f1s)),
        f"{prefix}count": float(len(truth)),
    }


def fit_head(
    regions: Sequence[TypedRegion],
    hyper: TypesHyperparameters,
    vocabulary: Sequence[str],
    seed: int,
) -> DefectTypeHead:
    return DefectTypeHead.fit(
        np.stack([r.vector for r in regions]),
        [r.exemplar() for r in regions],
        regions[0].groups,
        vocabulary=vocabulary,
        settings=hyper.head_settings(),
        seed=seed,
    )


def parent_without(parent: DefectTypeHead, held: set[int], seed: int) -> DefectTypeHead | None:
    """The active head refitted on its own exemplars minus the held-out images."""
    keep = [i for i, e in enumerate(parent.exemplars) if e.image_id not in held]
    if len({parent.exemplars[i].defect_type for i in keep}) < 2:
        return None
    return DefectTypeHead.fit(
        parent.features[keep],
        [parent.exemplars[i] for i in keep],
        parent.groups,
        vocabulary=parent.types,
        settings=parent.settings,
        seed=seed,
    )


def run_types_round(
    manifest: RoundManifest, out: Path, *, device: str, emit: Emit
) -> dict[str, object]:
    """Measure, fit, judge and save into ``out``; returns the metrics record."""
    hyper: TypesHyperparameters = manifest.typed_hyperparameters()
    check_feedback(manifest.train)
    started = time.monotonic()
    experts = manifest.extras.experts
    source = load_patch_source(
        Path(str(experts)) if experts else None, manifest.backbone, device=device
    )
    context = manifest.product_context
    threshold = manifest.extras.decision_threshold
    vocabulary = tuple(str(w) for w in context.get("defect_vocabulary", ()))
    samples = usable(manifest.train) + usable(manifest.held_out)
    regions = []
    for step, sample in enumerate(samples, start=1):
        regions.append(
            typed_region(
                sample,
                source,
                threshold=threshold,
                vocabulary=vocabulary,
            )
        )
        emit(ProgressEvent("step", step=step, total=len(samples)))
    train = regions[: len(usable(manifest.train))]
    held = regions[len(train) :]
    head = fit_head(train, hyper, vocabulary, manifest.seed)
    truth = [r.defect_type for r in held]
    after = type_scores(truth, [head.predict(r.vector).best for r in held], "held_out_")
    parent_path = manifest.extras.parent
    parent = DefectTypeHead.load(Path(str(parent_path))) if parent_path else None
    if parent is not None and parent.mean.size != train[0].vector.size:
        parent = None  # trained on another backbone: it cannot answer these vectors
    held_ids = {r.sample.image_id for r in held if r.sample.image_id is not None}
    before_head = None if parent is None else parent_without(parent, held_ids, manifest.seed)
    if before_head is not None:
        before_said = [before_head.predict(r.vector).best for r in held]
        baseline = "the active type head (refitted without the held-out defects)"
    else:
        before_said = [r.template_type for r in held]
        baseline = "the template's shape rules"
    before = type_scores(truth, before_said, "held_out_")
    if held:
        result = gated_result(before, after, manifest.extras.regression_tolerance)
    else:
        first = parent_path is None
        result = {
            "before": {},
            "after": {},
            "promote": first,
            "reason": "nothing held out yet (each type has too few reviewed defects); "
            + ("a first type head is promoted unjudged" if first else "kept as a candidate"),
        }
    if hyper.refit_on_all and held:
        head = fit_head(regions, hyper, vocabulary, manifest.seed)
    head.save(out)
    return result | {
        "baseline": baseline,
        "types": head.counts(),
        "defects": len(regions),
        "held_out_defects": len(held),
        "backbone": source.name,
        "temperature": head.temperature,
        "seconds": round(time.monotonic() - started, 2),
    }
