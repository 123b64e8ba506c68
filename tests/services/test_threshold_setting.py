"""A threshold moved by an engineer: counted, stored with its author, followed by the queue,
new inspections and the training gate; bad values refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workstation.__main__ import main
from workstation.core.errors import UserError
from workstation.services.threshold import counts_at, score_groups, set_threshold
from workstation.store.repository import Store

SCORES = {  # name: (split, label, score, review)
    "n0": ("test", "good", 0.2, None),
    "n1": ("test", "good", 1.1, None),  # a labelled normal above 1.0: a false alarm
    "d0": ("test", "scratch", 1.6, None),
    "d1": ("test", "scratch", 0.9, None),  # a labelled defect under 1.0: missed
    "r0": ("test", None, 1.3, "normal"),  # reviewed normal above 1.0
    "r1": ("test", None, 0.5, "anomalous"),  # reviewed defect under 1.0
    "u0": ("test", None, 2.0, None),  # unknown, flagged
    "t0": ("train", "good", -0.3, None),  # a training normal: not a "known normal"
}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "s.sqlite")
    product = store.create_product("part")
    store.update_product(product.id, threshold=1.0)
    for name, (split, label, score, review) in SCORES.items():
        record, _ = store.add_image(
            product.id,
            path=str(tmp_path / f"{name}.png"),
            sha256=name,
            width=8,
            height=8,
            split=split,
            source_label=label,
        )
        store.add_prediction(
            record.id,
            model_version="experts-1",
            score=score,
            anomalous=score >= 1.0,
            anomaly_map=np.zeros((8, 8), np.float32),
        )
        if review:
            store.add_review(record.id, review, reviewer="ann")
    return store


def test_counts_follow_the_threshold(store: Store) -> None:
    groups = score_groups(store, store.get_product("part"))
    assert sorted(groups.known_normals) == [0.2, 1.1, 1.3]
    assert sorted(groups.known_defects) == [0.5, 0.9, 1.6]
    assert groups.normal_shots == ()  # no fitted experts version in this store
    at_one = counts_at(groups, 1.0)
    assert (at_one.flagged, at_one.scored) == (4, 8)
    assert (at_one.false_alarms, at_one.missed) == (2, 2)
    higher = counts_at(groups, 1.4)
    assert (higher.flagged, higher.false_alarms, higher.missed) == (2, 0, 2)
    lower = counts_at(groups, 0.4)
    assert (lower.false_alarms, lower.missed) == (2, 0)


def test_a_set_threshold_is_recorded_with_its_author_and_reflags_the_queue(store: Store) -> None:
    product = store.get_product("part")
    setting = set_threshold(store, product, 1.4, author="eve", reason="too many false alarms")
    assert (setting.threshold, setting.author, setting.reason) == (
        1.4,
        "eve",
        "too many false alarms",
    )
    assert store.get_product("part").threshold == 1.4
    flagged = {r.image.name: r.anomalous for r in store.query_images(product.id, order_by="name")}
    assert flagged == {f"{n}.png": s >= 1.4 for n, (_, _, s, _) in SCORES.items()}
    # the prediction rows keep what the model said when it ran
    (u0,) = [r for r in store.list_images(product.id) if r.name == "d1.png"]
    assert store.latest_prediction(u0.id).anomalous is False
    set_threshold(store, store.get_product("part"), 1.2, author="bob")
    assert [h.threshold for h in store.threshold_history(product.id)] == [1.4, 1.2]
    with pytest.raises(UserError, match="finite"):
        set_threshold(store, product, float("inf"), author="eve")
    with pytest.raises(UserError, match="author"):
        set_threshold(store, product, 1.0, author=" ")


def test_the_gate_is_told_the_threshold(store: Store, tmp_path: Path) -> None:
    from workstation.services.rounds import RoundOptions, build_manifest

    set_threshold(store, store.get_product("part"), 1.3, author="eve")
    manifest = build_manifest(
        store, store.get_product("part"), RoundOptions(kind="selftaught"), tmp_path / "round"
    )
    assert manifest.extras.decision_threshold == 1.3


def test_models_threshold_cli(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(store.path)
    store.close()
    assert main(["models", "threshold", "--product", "part", "--db", db, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] == 1.0 and report["counts"]["flagged"] == 4
    args = ["models", "threshold", "--product", "part", "--db", db]
    assert main([*args, "--set", "1.4", "--author", "eve", "--reason", "audit"]) == 0
    out = capsys.readouterr().out
    assert "threshold 1.400" in out and "by eve" in out and "(audit)" in out
    assert main([*args, "--set", "nan"]) == 2
    assert "finite" in capsys.readouterr().err
    assert main(["models", "threshold", "--product", "nope", "--db", db]) == 2
