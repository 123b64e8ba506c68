"""The types kind's light parts: strict hyperparameters and the feedback check."""

from __future__ import annotations

import pytest

from training.contract import NotEnoughFeedbackError, RoundManifest, Sample
from training.kinds.types import TypesHyperparameters
from training.kinds.types import check_feedback as check_types_feedback
from training.types_round import type_scores
from workstation.core.errors import UserError


def _defect(kind: str, index: int, mask: str | None = "m.npy") -> Sample:
    return Sample(
        image_path=f"/d/{kind}/{index}.png",
        label="anomalous",
        image_id=index,
        mask_path=mask,
        explanation={"verdict": "anomalous", "defect_type": kind},
    )


def test_hyperparameters_are_strict() -> None:
    hyper = TypesHyperparameters.from_dict({"l2": 2.0})
    assert hyper.l2 == 2.0 and hyper.head_settings().l2 == 2.0
    with pytest.raises(UserError, match=r"unknown types hyperparameter.*stepz"):
        TypesHyperparameters.from_dict({"stepz": 10})
    with pytest.raises(UserError, match="confidence_bar"):
        TypesHyperparameters.from_dict({"confidence_bar": 2.0})
    with pytest.raises(UserError, match="bad types hyperparameters"):
        TypesHyperparameters.from_dict({"steps": "ten"})


def test_feedback_needs_masked_defects_of_two_types() -> None:
    with pytest.raises(NotEnoughFeedbackError, match="no reviewed defects"):
        check_types_feedback([_defect("crack", 1, mask=None)])
    with pytest.raises(NotEnoughFeedbackError, match="at least two defect types"):
        check_types_feedback([_defect("crack", 1), _defect("crack", 2)])
    check_types_feedback([_defect("crack", 1), _defect("pit", 2)])


def test_a_types_manifest_round_trips_with_maps_and_authors() -> None:
    sample = Sample(**{**_defect("pit", 3).__dict__, "map_path": "a.npy", "author": "anna"})
    manifest = RoundManifest(
        product="p", kind="types", backbone="filterbank", base_model="",
        train=(sample,), held_out=(),
    )
    again = RoundManifest.from_json(manifest.to_json())
    assert again.train[0].map_path == "a.npy" and again.train[0].author == "anna"


def test_type_scores() -> None:
    scores = type_scores(["a", "a", "b", "b"], ["a", "b", "b", "b"], "x_")
    assert scores["x_type_accuracy"] == 0.75
    assert scores["x_type_macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert type_scores([], [], "x_") == {}
