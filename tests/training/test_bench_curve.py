"""``bench training --curve``: the learning curve runs end to end on an MVTec-layout folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_parts import write_category

from workstation.__main__ import main


@pytest.mark.slow
def test_curve_reports_each_feedback_step_on_images_it_never_trained_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_category(tmp_path / "part", train=8, good=4, bad=8)
    out = tmp_path / "curve.json"
    code = main(
        [
            "bench",
            "training",
            "--curve",
            str(dataset),
            "--shots",
            "4",
            "--feedback",
            "2",
            "4",
            "--image-size",
            "64",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    capsys.readouterr()
    report = json.loads(out.read_text())
    assert (report["feedback_defects"], report["eval_defects"], report["eval_normals"]) == (4, 4, 4)
    assert report["training_normals"] == 4
    assert [point["masks"] for point in report["curve"]] == [0, 2, 4]
    for point in report["curve"]:
        for metric in point["fused"].values():
            assert 0.0 <= metric <= 1.0
    # the synthetic dent is easy: a head trained on four masks must find it on unseen images
    assert report["curve"][-1]["adapter_alone"]["pixel_auroc"] > 0.8
