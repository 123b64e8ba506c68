"""The per-product fusion choice: evidence, the robust rule, and the pipeline using it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from synthetic_parts import textured

from workstation.core.types import AnomalyMap
from workstation.experts.fewshot import FewShotConfig
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.selection import (
    Evidence,
    Member,
    build_evidence,
    choose_fusion,
)
from workstation.experts.synthetic import FAMILIES
from workstation.experts.synthetic.evidence import EVIDENCE_FAMILIES, paint_evidence

SIZE = 32


def test_evidence_families_are_never_training_families() -> None:
    assert EVIDENCE_FAMILIES and not set(EVIDENCE_FAMILIES) & set(FAMILIES)


@pytest.mark.parametrize("family", EVIDENCE_FAMILIES)
def test_evidence_defects_change_exactly_their_mask(family: str) -> None:
    image = textured(1, 96)
    defect = paint_evidence(image, family, np.random.default_rng(3))
    assert defect is not None and defect.mask.any()
    changed = (defect.image != image).any(-1)
    assert not changed[defect.mask == 0].any()


def test_specks_are_tiny() -> None:
    rng = np.random.default_rng(0)
    areas = [paint_evidence(textured(s, 96), "speck", rng) for s in range(8)]
    assert max(int(d.mask.sum()) for d in areas if d is not None) <= 80


def test_build_evidence_pastes_defects_on_each_held_out_normal() -> None:
    normals = [textured(s, 96) for s in range(4)]
    labelled = [(textured(9, 96), None)]
    evidence = build_evidence(normals, [3, 5, 7, 9], labelled=labelled, seed=0)
    assert evidence.family.count("normal") == 4
    assert evidence.source[-1] == -1 and evidence.masks[-1] is None
    assert set(evidence.source) == {3, 5, 7, 9, -1}
    assert evidence.anomalous.sum() == len(evidence.images) - 4


def _evidence(normals: int = 8, defects: int = 16) -> Evidence:
    masks = [np.zeros((SIZE, SIZE), np.uint8) for _ in range(normals)]
    for k in range(defects):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        y, x = 4 + (k * 5) % 20, 4 + (k * 7) % 20
        mask[y : y + 4, x : x + 4] = 1
        masks.append(mask)
    count = normals + defects
    return Evidence(
        images=tuple(np.zeros((SIZE, SIZE, 3), np.uint8) for _ in range(count)),
        masks=tuple(masks),
        anomalous=np.asarray([False] * normals + [True] * defects),
        source=tuple(range(normals)) + tuple(k % normals for k in range(defects)),
        family=("normal",) * normals + ("speck",) * defects,
    )


def _member(
    name: str,
    evidence: Evidence,
    strength: Sequence[float],
    seed: int,
    *,
    slot: str | None = None,
    usable: np.ndarray | None = None,
) -> Member:
    """Noise plus ``strength[row]`` on the row's defect pixels."""
    rng = np.random.default_rng(seed)
    maps = [
        rng.random((SIZE, SIZE)).astype(np.float32) + s * m.astype(np.float32)
        for s, m in zip(strength, evidence.masks, strict=True)  # type: ignore[arg-type]
    ]
    return Member(
        name=name,
        slot=slot or name.partition("(")[0],
        maps=maps,
        scores=np.asarray([float(m.max()) for m in maps]),
        usable=np.ones(len(maps), bool) if usable is None else usable,
        probability=slot is None and "(" not in name,
    )


def test_the_stronger_backbone_wins_and_a_useless_expert_is_left_out() -> None:
    evidence = _evidence()
    weak = _member("fewshot(a)", evidence, [0.0] * 8 + [0.3] * 16, 1)
    strong = _member("fewshot(b)", evidence, [0.0] * 8 + [0.6] * 16, 2)
    noise = _member("selftaught", evidence, [0.0] * 24, 3)
    choice = choose_fusion(evidence, [weak, strong, noise])
    assert [p.member for p in choice.chosen] == ["fewshot(b)"]
    assert "selftaught" in choice.left_out
    assert "AUROC" in choice.left_out["selftaught"]
    assert choice.summary().startswith("fusion: fewshot(b); selftaught left out: evidence")


def test_the_first_listed_alternative_wins_within_noise() -> None:
    evidence = _evidence()
    first = _member("fewshot(a)", evidence, [0.0] * 8 + [3.0] * 16, 1)
    second = _member("fewshot(b)", evidence, [0.0] * 8 + [3.05] * 16, 2)
    choice = choose_fusion(evidence, [first, second])
    assert choice.options() == {"fewshot": "a"}
    assert choose_fusion(evidence, [second, first]).options() == {"fewshot": "b"}


def test_an_alternative_worse_than_the_reference_on_pixels_is_not_chosen() -> None:
    """Better image AUROC and a better mean, but coarser maps than the reference: the
    reference stays (a backbone must not trade away tiny defects for the image score)."""
    evidence = _evidence()
    labels = evidence.anomalous
    reference = _member("fewshot(a)", evidence, [0.0] * 8 + [2.0] * 16, 1)
    reference.scores = np.random.default_rng(5).random(len(labels))
    coarse = _member("fewshot(b)", evidence, [0.0] * 8 + [0.5] * 16, 2)
    coarse.scores = labels.astype(float) * 10.0
    assert choose_fusion(evidence, [coarse]).options() == {"fewshot": "b"}
    choice = choose_fusion(evidence, [reference, coarse])
    assert choice.options() == {"fewshot": "a"}
    assert "fewshot(b) below fewshot(a) on one metric" in choice.reason
    sharper = _member("fewshot(c)", evidence, [0.0] * 8 + [2.5] * 16, 3)
    sharper.scores = labels.astype(float) * 10.0
    assert choose_fusion(evidence, [reference, coarse, sharper]).options() == {"fewshot": "c"}


def test_a_complementary_expert_joins_only_when_it_helps_on_both_metrics() -> None:
    evidence = _evidence()
    half = [0.0] * 8 + [2.0, 0.0] * 8
    other_half = [0.0] * 8 + [0.0, 2.0] * 8
    base = _member("fewshot(a)", evidence, half, 1)
    helper = _member("selftaught", evidence, other_half, 2)
    choice = choose_fusion(evidence, [base, helper])
    assert [p.member for p in choice.chosen] == ["fewshot(a)", "selftaught"]
    assert not choice.left_out
    alone = next(c for c in choice.candidates if c["candidate"] == "fewshot(a)")
    assert float(choice.chosen_metrics.split()[1]) > float(alone["image_auroc"])  # type: ignore[arg-type]


def test_a_trained_expert_is_judged_only_on_rows_it_did_not_learn_from() -> None:
    evidence = _evidence()
    unseen = np.asarray([s in (0, 1) for s in evidence.source])
    base = _member("fewshot(a)", evidence, [0.0] * 8 + [2.0, 0.0] * 8, 1)
    helper = _member("selftaught", evidence, [0.0] * 8 + [0.0, 2.0] * 8, 2, usable=unseen)
    choice = choose_fusion(evidence, [base, helper])
    judged = [c for c in choice.candidates if "selftaught" in str(c["candidate"])]
    assert judged and all(c["normals"] == 2 for c in judged)
    nothing = _member("selftaught", evidence, [0.0] * 24, 2, usable=np.zeros(24, bool))
    choice = choose_fusion(evidence, [base, nothing])
    assert "no held-out evidence" in choice.left_out["selftaught"]


class NoisyNetwork:
    """Stand-in for a self-taught network that learned nothing useful: random maps."""

    name = "selftaught"

    def __init__(self, seen: Sequence[np.ndarray]) -> None:
        self.seen = [np.asarray(s) for s in seen]

    def fit(self, normals: Sequence[np.ndarray], *, progress: object = None) -> None:
        del normals, progress

    def has_seen(self, image: np.ndarray) -> bool:
        return any(s.shape == image.shape and np.array_equal(s, image) for s in self.seen)

    def predict(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        out = []
        for image in images:
            rng = np.random.default_rng(int(np.asarray(image).sum()) % 1000)
            heat = rng.random(image.shape[:2]).astype(np.float32) * 0.5
            out.append(AnomalyMap(heat, float(heat.max()), expert=self.name))
        return out


def test_the_pipeline_leaves_a_useless_network_out_and_says_so(tmp_path: Path) -> None:
    normals = [textured(seed) for seed in range(8)]
    pipeline = InspectionPipeline(PipelineConfig(fewshot=FewShotConfig(image_size=96)))
    pipeline.add_expert(NoisyNetwork(normals[:5]), additive=True)
    calibration = pipeline.fit(normals)
    assert pipeline.choice is not None
    assert "selftaught" in pipeline.choice.left_out
    assert [n.name for n in calibration.norms] == ["fewshot"]
    assert "selftaught left out" in pipeline.choice.summary()
    pipeline.save(tmp_path / "v")
    loaded = InspectionPipeline.load(tmp_path / "v")
    assert loaded.choice is not None and loaded.choice.summary() == pipeline.choice.summary()
    assert list(loaded.experts) == ["fewshot"]


def test_fixed_fusion_keeps_every_expert() -> None:
    normals = [textured(seed) for seed in range(6)]
    config = PipelineConfig(fewshot=FewShotConfig(image_size=96), select=False)
    pipeline = InspectionPipeline(config)
    pipeline.add_expert(NoisyNetwork(normals[:4]), additive=True)
    calibration = pipeline.fit(normals)
    assert pipeline.choice is None
    assert [n.name for n in calibration.norms] == ["fewshot", "selftaught"]


def test_the_image_head_learns_from_confirmed_defects_and_round_trips(tmp_path: Path) -> None:
    from synthetic_parts import with_defect

    normals = [textured(seed) for seed in range(8)]
    confirmed = [with_defect(20 + k) for k in range(3)]
    pipeline = InspectionPipeline(PipelineConfig(fewshot=FewShotConfig(image_size=96)))
    calibration = pipeline.fit(normals, anomalies=confirmed)
    assert calibration.head is not None and calibration.head.labelled == 3
    assert pipeline.choice is not None and "3 confirmed defects" in pipeline.choice.summary()
    defect, _ = with_defect(40)
    results = pipeline.predict([textured(50), defect])
    assert results[1].score > results[0].score
    pipeline.save(tmp_path / "v")
    again = InspectionPipeline.load(tmp_path / "v").predict([textured(50), defect])
    assert [r.score for r in again] == pytest.approx([r.score for r in results])


def test_fit_head_weights_confirmed_defects_like_all_synthetic_ones() -> None:
    from workstation.experts.image_head import fit_head

    rng = np.random.default_rng(0)
    normal = [rng.random((16, 16)) for _ in range(10)]
    faint = [rng.random((16, 16)) + 0.2 for _ in range(10)]
    strong = [rng.random((16, 16)) + 3.0 * (rng.random((16, 16)) > 0.9) for _ in range(2)]
    head = fit_head(
        normal + faint + strong, [False] * 10 + [True] * 12, [False] * 20 + [True] * 2
    )
    assert head.labelled == 2
    assert head.score(strong[0]) > max(head.score(n) for n in normal)


def test_no_visible_evidence_keeps_the_configured_experts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import workstation.experts.selection as selection

    monkeypatch.setattr(selection, "paint_evidence", lambda *args: None)
    normals = [textured(seed) for seed in range(4)]
    config = PipelineConfig(fewshot=FewShotConfig(image_size=96), backbone="auto")
    pipeline = InspectionPipeline(config)
    pipeline.add_expert(NoisyNetwork(normals[:2]), additive=True)
    calibration = pipeline.fit(normals)
    assert pipeline.choice is None
    assert pipeline.config.backbone == "filterbank"
    assert [n.name for n in calibration.norms] == ["fewshot", "selftaught"]


def test_auto_tries_the_reference_first_then_the_backbones_by_worst_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Installed order is the registry's; ``auto`` reorders by PREFERENCE, leaves out
    NOT_AUTO, and keeps a backbone it has no rank for (after the ranked ones)."""
    from workstation.experts import choosing

    installed = ("efficientnet-lite0", "vgg16-hed", "new-net", "mobilenet-v2", "efficientnet-lite2")
    monkeypatch.setattr(choosing, "installed_imagenet_backbones", lambda: installed)
    assert choosing.candidate_backbones("auto") == (
        "filterbank",
        "efficientnet-lite2",
        "efficientnet-lite0",
        "mobilenet-v2",
        "new-net",
    )
    assert choosing.candidate_backbones("efficientnet-lite0") == ("efficientnet-lite0",)
