"""Inspection and onboarding services on a store of synthetic parts, and their CLIs."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from synthetic_parts import textured, with_defect, write_category

from workstation.__main__ import main
from workstation.config import ExpertSettings
from workstation.core.errors import CancelledError, UserError
from workstation.core.imageio import write_png
from workstation.paths import models_dir
from workstation.services.inspect import inspect_product
from workstation.services.onboard import onboard_product
from workstation.store.repository import Store

SETTINGS = ExpertSettings(image_size=96, target_false_positive_rate=0.2)


def add(
    store: Store, product_id: int, path: Path, image: np.ndarray, split: str, label: str | None
) -> int:
    write_png(path, image)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    record, _ = store.add_image(
        product_id, path=path, sha256=digest, width=image.shape[1], height=image.shape[0],
        split=split, source_label=label,  # type: ignore[arg-type]
    )
    return record.id


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "db.sqlite")
    product = store.create_product("bracket", description="machined bracket")
    for seed in range(5):
        add(store, product.id, tmp_path / f"n{seed}.png", textured(seed), "train", "good")
    for seed in range(3):
        add(store, product.id, tmp_path / f"u{seed}.png", textured(50 + seed), "unlabeled", None)
    add(store, product.id, tmp_path / "d.png", with_defect(7)[0], "test", "dent")
    yield store
    store.close()


def test_inspect_writes_predictions_and_resumes(store: Store) -> None:
    calls: list[tuple[int, int]] = []
    report = inspect_product(
        store, "bracket", SETTINGS, batch_size=4, progress=lambda d, t: calls.append((d, t))
    )
    assert (report.total, report.predicted, report.skipped) == (9, 9, 0)
    assert report.model_version == "experts-1"
    assert calls[-1] == (9, 9)
    product = store.get_product("bracket")
    version = store.active_model_version(product.id, "experts")
    assert version is not None and version.name == "experts-1"
    assert Path(version.path or "") == store.models_dir / "experts-1"
    assert not models_dir().exists()  # nothing in the shared home folder
    assert (Path(version.path or "") / "calibration.json").is_file()
    defect = next(r for r in store.list_images(product.id) if r.source_label == "dent")
    prediction = store.latest_prediction(defect.id, model_version="experts-1")
    assert prediction is not None and prediction.anomalous
    assert store.load_map(prediction).shape == (96, 96)
    # each expert's own score is kept for the review queue (experts that disagree)
    assert set(prediction.expert_scores) == {"fewshot"}
    assert prediction.expert_scores["fewshot"] > 0
    again = inspect_product(store, "bracket", SETTINGS)
    assert (again.predicted, again.skipped, again.model_version) == (0, 9, "experts-1")


def test_inspect_cancels_between_batches(store: Store) -> None:
    cancel = threading.Event()

    def stop_after_first(done: int, total: int) -> None:
        if done > 0:
            cancel.set()

    with pytest.raises(CancelledError):
        inspect_product(store, "bracket", SETTINGS, batch_size=2, cancel=cancel,
                        progress=stop_after_first)
    product = store.get_product("bracket")
    assert len(store.predicted_image_ids(product.id, "experts-1")) == 2
    resumed = inspect_product(store, "bracket", SETTINGS)
    assert (resumed.predicted, resumed.skipped) == (7, 2)


def test_inspect_without_normals_is_a_user_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "empty.sqlite")
    product = store.create_product("lonely")
    add(store, product.id, tmp_path / "x.png", textured(1), "unlabeled", None)
    with pytest.raises(UserError, match="no normal images"):
        inspect_product(store, "lonely", SETTINGS)
    store.close()


def test_onboard_reports_readiness_and_defects(store: Store) -> None:
    result = onboard_product(store, "bracket", SETTINGS, defect_vocabulary=["dent"])
    assert result.product.defect_vocabulary == ("dent",)
    assert result.product.threshold == 1.0
    assert result.readiness.normals == 5
    assert "more normals" in result.readiness.note
    assert len(result.defect_scores) == 1 and result.defect_scores[0][1] > 1.0
    second = onboard_product(store, "bracket", SETTINGS)
    assert second.version.name == "experts-2" and second.version.parent_id == result.version.id


def test_inspect_cli_scores_files(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.close()
    image = tmp_path / "query.png"
    write_png(image, with_defect(11)[0])
    config = "[experts]\nimage_size = 96\ntarget_false_positive_rate = 0.2\n"
    from workstation.config import user_config_path

    user_config_path().parent.mkdir(parents=True, exist_ok=True)
    user_config_path().write_text(config)
    code = main(["--db", str(tmp_path / "db.sqlite"), "inspect", str(image),
                 "--product", "bracket", "--json", "--explain"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["verdict"] == "anomalous" and rows[0]["explanation"]["verdict"] == "anomalous"
    assert main(["--db", str(tmp_path / "db.sqlite"), "inspect", "--product", "nope"]) == 2
    assert main(["--db", str(tmp_path / "db.sqlite"), "inspect", "--product", "bracket"]) == 0
    out = capsys.readouterr().out
    assert "9 image(s) scored" in out and "0 already scored" in out


def test_eval_cli_writes_the_report(tmp_path: Path) -> None:
    root = write_category(tmp_path / "data" / "widget")
    out = tmp_path / "report.json"
    code = main(["eval", str(root.parent), "--shots", "4", "--image-size", "96",
                 "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    row = report["categories"]["widget"]
    assert set(row) >= {"image_auroc", "pixel_auroc", "aupro", "f1_max", "n_test"}
    assert row["n_test"] == 6 and row["image_auroc"] == 1.0
    assert all(0 <= report["mean"][k] <= 1 for k in ("image_auroc", "pixel_auroc", "aupro"))
    assert report["config"]["shots"] == 4


def test_eval_more_shots_than_normals_is_a_user_error(tmp_path: Path) -> None:
    root = write_category(tmp_path / "widget", train=3)
    assert main(["eval", str(root), "--shots", "5", "--image-size", "96"]) == 2
    assert main(["eval", str(tmp_path / "nowhere")]) == 2


def test_fitting_decodes_large_normals_only_as_large_as_the_experts_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workstation.experts.pipeline import InspectionPipeline

    store = Store.open(tmp_path / "db.sqlite")
    product = store.create_product("plate")
    for seed in range(3):  # 960x480 camera frames; the experts work at about 96x96 pixels
        big = np.tile(textured(seed, 96), (5, 10, 1))
        add(store, product.id, tmp_path / f"n{seed}.png", big, "train", "good")
    seen: list[tuple[int, ...]] = []
    real_fit = InspectionPipeline.fit

    def spy(self: InspectionPipeline, normals: list[np.ndarray], **kw: object) -> object:
        seen.extend(im.shape for im in normals)
        return real_fit(self, normals, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(InspectionPipeline, "fit", spy)
    onboard_product(store, "plate", SETTINGS)
    store.close()
    # long side 2 * 96 * sqrt(2) = 272 px, aspect kept
    assert seen == [(136, 272, 3)] * 3


def test_inspect_of_many_files_scores_the_good_ones_and_lists_the_bad(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.close()
    good, empty = tmp_path / "a.png", tmp_path / "empty.png"
    write_png(good, with_defect(11)[0])
    empty.write_bytes(b"")
    missing = tmp_path / "gone.png"
    db = str(tmp_path / "db.sqlite")
    argv = ["--db", db, "inspect", str(empty), str(good), str(missing), "--product", "bracket"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert f"{good}: anomalous" in captured.out
    assert "2 of 3 image(s) not scored" in captured.err
    assert "empty.png: the file is empty" in captured.err
    assert "gone.png: file not found" in captured.err
    assert "Traceback" not in captured.err
    assert main([*argv, "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == [str(good), str(empty), str(missing)]
    assert rows[0]["verdict"] == "anomalous" and "error" in rows[1] and "error" in rows[2]
