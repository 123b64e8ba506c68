"""The defect-type head: few-shot, calibrated, with an unsure answer and a vocabulary prior;
and the region vectors it learns from."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from workstation.core.errors import UserError
from workstation.experts.defect_types import UNSURE, DefectTypeHead, Exemplar, HeadSettings
from workstation.experts.filterbank import FilterBankBackbone
from workstation.experts.regions import GROUPS, PatchSource, region_vector

GROUP_SHAPES = (("texture", 12), ("shape", 3))
TYPES = ("crack", "pit", "stain")


def _clusters(per_type: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Three types apart in the small 'shape' group, noise in the wide 'texture' group."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for index, kind in enumerate(TYPES):
        for _ in range(per_type):
            texture = rng.normal(0, 1, 12)
            shape = rng.normal(0, 0.4, 3)
            shape[index] += 2.0
            rows.append(np.concatenate([texture, shape]))
            labels.append(kind)
    return np.asarray(rows), labels


def _head(per_type: int, seed: int = 0, **settings: float) -> DefectTypeHead:
    x, labels = _clusters(per_type, seed)
    exemplars = [Exemplar(t, f"{t}/{i:03d}.png", "anna", image_id=i) for i, t in enumerate(labels)]
    return DefectTypeHead.fit(
        x, exemplars, GROUP_SHAPES, settings=HeadSettings(**settings), seed=seed
    )


def _accuracy(head: DefectTypeHead, seed: int = 99) -> float:
    x, labels = _clusters(30, seed)
    return float(np.mean([head.predict(v).best == t for v, t in zip(x, labels, strict=True)]))


def test_one_example_per_type_already_names_types_and_more_help() -> None:
    one = np.mean([_accuracy(_head(1, seed)) for seed in range(5)])
    ten = np.mean([_accuracy(_head(10, seed)) for seed in range(5)])
    assert one > 0.5  # chance is 1/3
    assert ten > 0.9 and ten > one


def test_group_weights_let_a_narrow_informative_group_win() -> None:
    head = _head(8)
    shape_columns = head.scale[-3:]
    texture_columns = head.scale[:12]
    # a larger scale is a smaller weight: the noisy texture columns weigh less
    assert texture_columns.mean() > 2 * shape_columns.mean()


def test_probabilities_are_calibrated_and_unsure_under_the_bar() -> None:
    head = _head(10, confidence_bar=0.6)
    x, labels = _clusters(40, 5)
    predictions = [head.predict(v) for v in x]
    confidence = np.mean([p.confidence for p in predictions])
    accuracy = np.mean([p.best == t for p, t in zip(predictions, labels, strict=True)])
    assert abs(confidence - accuracy) < 0.12
    crack = x[[t == "crack" for t in labels]].mean(0)
    pit = x[[t == "pit" for t in labels]].mean(0)
    path = [head.predict(crack + (pit - crack) * f) for f in np.linspace(0, 1, 41)]
    assert not path[0].unsure and path[0].best == "crack"
    assert not path[-1].unsure and path[-1].best == "pit"
    torn = [p for p in path if p.unsure]  # where the answer turns from crack to pit
    assert torn and all(p.answer == UNSURE for p in torn)
    assert {t for t, _ in torn[0].runners_up(2)} == {"crack", "pit"}


def test_the_prior_lends_types_without_examples_a_share() -> None:
    x, labels = _clusters(3, 0)
    keep = [i for i, t in enumerate(labels) if t != "stain"]
    head = DefectTypeHead.fit(
        x[keep],
        [Exemplar(labels[i], f"{i}.png") for i in keep],
        GROUP_SHAPES,
        vocabulary=TYPES,
    )
    stain_like = _clusters(1, 3)[0][2]
    without = head.predict(stain_like)
    assert "stain" not in without.probabilities or without.probabilities["stain"] == 0
    with_prior = head.predict(stain_like, prior={"crack": 0.05, "pit": 0.05, "stain": 0.9})
    assert with_prior.probabilities["stain"] > 0.3
    assert abs(sum(with_prior.probabilities.values()) - 1) < 1e-6


def test_neighbours_name_the_closest_reviewed_defects(tmp_path: Path) -> None:
    head = _head(4)
    x, _ = _clusters(4, 0)
    answer = head.predict(x[0], exclude_image=0)
    assert answer.neighbours and all(n.exemplar.image_id != 0 for n in answer.neighbours)
    assert answer.neighbours[0].exemplar.defect_type == "crack"
    loaded = DefectTypeHead.load(head.save(tmp_path / "head"))
    again = loaded.predict(x[0])
    assert again.probabilities == pytest.approx(head.predict(x[0]).probabilities)
    assert loaded.exemplars == head.exemplars and loaded.counts() == head.counts()


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    head = _head(2)
    with pytest.raises(UserError, match="expects 15"):
        head.predict(np.zeros(7))
    with pytest.raises(UserError, match="one feature row"):
        DefectTypeHead.fit(np.zeros((2, 15)), [Exemplar("a", "x")], GROUP_SHAPES)
    with pytest.raises(UserError, match="no defect-type head"):
        DefectTypeHead.load(tmp_path)
    (tmp_path / "type_head.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "type_head.npz").write_bytes(b"")
    with pytest.raises(UserError, match="damaged"):
        DefectTypeHead.load(tmp_path)
    with pytest.raises(UserError):
        HeadSettings(confidence_bar=1.5)


def _plate() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (120 + rng.normal(0, 4, (96, 96, 3))).clip(0, 255).astype(np.uint8)


def test_region_vectors_tell_a_line_from_a_spot() -> None:
    source = PatchSource(FilterBankBackbone(), image_size=96)
    image = _plate()
    line = np.zeros((96, 96), np.uint8)
    line[40:42, 10:80] = 1
    spot = np.zeros((96, 96), np.uint8)
    spot[40:46, 40:46] = 1
    dark = image.copy()
    dark[spot > 0] = 30
    a = region_vector(image, line, None, None, source)
    b = region_vector(dark, spot, None, None, source)
    assert [name for name, _ in a.groups] == list(GROUPS)
    offsets = np.cumsum([0] + [w for _, w in a.groups])
    shape = dict(zip(GROUPS, itertools.pairwise(offsets), strict=True))
    start, _ = shape["shape"]
    assert a.values[start + 2] > b.values[start + 2] + 1  # log elongation
    p0, _ = shape["pixels"]
    assert b.values[p0] < -3  # the spot is much darker than its surroundings
    with pytest.raises(UserError, match="empty"):
        region_vector(image, np.zeros((96, 96), np.uint8), None, None, source)
    with pytest.raises(UserError, match="mask is"):
        region_vector(image, np.ones((10, 10), np.uint8), None, None, source)
