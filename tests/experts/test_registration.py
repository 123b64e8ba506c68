"""Pose registration: recovers a known shift and turn, falls back to no transform when it
cannot be trusted, and puts maps back on the original pixels."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import cv2
import numpy as np
import pytest

from workstation.config import ALIGN_MODES
from workstation.experts.fewshot import FewShotConfig
from workstation.experts.pipeline import InspectionPipeline, PipelineConfig
from workstation.experts.registration import (
    MAX_TURN_DEGREES,
    AlignMode,
    Registrar,
    _correlation,
)


def _part(size: int = 160) -> np.ndarray:
    """An asymmetric part: a plate with an off-centre bore and a notch, on dark ground."""
    image = np.full((size, size, 3), 30, np.uint8)
    cv2.rectangle(image, (25, 30), (135, 125), (170, 170, 170), -1)
    cv2.circle(image, (60, 70), 18, (40, 40, 40), -1)
    cv2.rectangle(image, (110, 95), (135, 125), (30, 30, 30), -1)
    noise = np.random.default_rng(0).normal(0, 3, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _moved(image: np.ndarray, angle: float, shift: tuple[float, float]) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += shift
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


@pytest.mark.parametrize("mode", ["rigid", "similarity"])
def test_a_shifted_and_turned_part_is_brought_back_to_the_reference_pose(mode: str) -> None:
    reference = _part()
    registrar = Registrar(mode)  # type: ignore[arg-type]
    registrar.fit([reference])
    moved = _moved(reference, 4.0, (6.0, -5.0))
    alignment = registrar.estimate(moved)
    assert alignment.aligned
    aligned = registrar.align(moved, alignment)
    inner = (slice(20, 140), slice(20, 140))
    before = _correlation(_gray(moved)[inner], _gray(reference)[inner])
    after = _correlation(_gray(aligned)[inner], _gray(reference)[inner])
    assert after > 0.97 > before


def test_maps_go_back_onto_the_original_pixels() -> None:
    reference = _part()
    registrar = Registrar("rigid")
    registrar.fit([reference])
    moved = _moved(reference, -3.0, (4.0, 3.0))
    alignment = registrar.estimate(moved)
    # A "map" that marks the bore in the reference pose must land on the moved bore.
    heat = np.zeros(reference.shape[:2], np.float32)
    cv2.circle(heat, (60, 70), 12, 1.0, -1)
    back = registrar.unalign(heat, alignment)
    moved_bore = _moved(heat[..., None].repeat(3, axis=2), -3.0, (4.0, 3.0))[..., 0] > 0.5
    assert back[moved_bore].mean() > 0.9 and back[~moved_bore].mean() < 0.02


def test_registering_never_changes_the_stored_reference() -> None:
    registrar = Registrar("rigid")
    registrar.fit([_part()])
    assert registrar.reference is not None
    before = registrar.reference.copy()
    first = registrar.estimate(_moved(_part(), 2.0, (3.0, 1.0))).matrix
    second = registrar.estimate(_moved(_part(), 2.0, (3.0, 1.0))).matrix
    assert np.array_equal(registrar.reference, before)
    assert np.allclose(first, second)


def test_blank_foreign_or_unrelated_images_are_left_as_they_are() -> None:
    registrar = Registrar("rigid")
    registrar.fit([_part()])
    assert not registrar.estimate(np.zeros((160, 160, 3), np.uint8)).aligned
    assert not registrar.estimate(_part(size=128)).aligned
    off = Registrar("off")
    off.fit([_part()])
    assert not off.estimate(_moved(_part(), 3.0, (2.0, 2.0))).aligned


def test_a_symmetric_part_never_gets_a_wild_warp() -> None:
    disc = np.full((160, 160, 3), 30, np.uint8)
    cv2.circle(disc, (80, 80), 50, (180, 180, 180), -1)
    registrar = Registrar("rigid")
    registrar.fit([disc])
    turned = _moved(disc, 9.0, (0.0, 0.0))
    alignment = registrar.estimate(turned)
    turn = abs(np.degrees(np.arctan2(alignment.matrix[1, 0], alignment.matrix[0, 0])))
    assert turn <= MAX_TURN_DEGREES
    aligned = registrar.align(turned, alignment)
    assert _correlation(_gray(aligned), _gray(disc)) >= _correlation(_gray(turned), _gray(disc))


def test_an_aligned_pipeline_saves_its_reference(tmp_path: Path) -> None:
    shots = [_moved(_part(), a, (a, -a)) for a in (-2.0, 0.0, 1.0, 2.5)]
    config = PipelineConfig(fewshot=FewShotConfig(image_size=64), align="rigid")
    pipeline = InspectionPipeline(config)
    pipeline.fit(shots)
    probe = _moved(_part(), 1.5, (3.0, 2.0))
    expected = pipeline.predict([probe])[0]
    pipeline.save(tmp_path / "model")
    loaded = InspectionPipeline.load(tmp_path / "model")
    assert loaded.registrar.reference is not None
    assert np.array_equal(loaded.registrar.reference, pipeline.registrar.reference)
    again = loaded.predict([probe])[0]
    assert again.score == pytest.approx(expected.score, rel=1e-5)
    assert again.map.shape == probe.shape[:2]


def test_the_settings_offer_exactly_the_registration_modes() -> None:
    assert get_args(AlignMode) == ALIGN_MODES
