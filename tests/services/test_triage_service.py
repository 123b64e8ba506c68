"""An inspection pass leaves every scored image with a draft and a queue position."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from synthetic_parts import write_category

from workstation.__main__ import main
from workstation.config import ExpertSettings
from workstation.core.errors import CancelledError
from workstation.services.importing import import_directory
from workstation.services.triage import triage_product
from workstation.store.repository import Store

SETTINGS = ExpertSettings(image_size=96, target_false_positive_rate=0.2)


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "triage.sqlite")
    import_directory(store, write_category(tmp_path / "plate"), product="plate")
    yield store
    store.close()


def test_triage_scores_drafts_and_queues_every_image(store: Store) -> None:
    stages: set[str] = set()
    report = triage_product(
        store, "plate", SETTINGS, progress=lambda done, total, stage: stages.add(stage)
    )
    product = store.get_product("plate")
    images = store.list_images(product.id)
    assert report.inspection.predicted == len(images) == 12
    assert report.drafted == len(images)
    assert stages == {"scoring", "drafting"}
    for image in images:
        draft = store.latest_explanation(image.id)
        assert draft is not None and draft.source == "template"
        assert draft.model_version == report.inspection.model_version
    priorities = store.get_priorities(product.id)
    assert report.queued == len(priorities) == len(images)


def test_triage_twice_writes_no_second_draft(store: Store) -> None:
    triage_product(store, "plate", SETTINGS)
    again = triage_product(store, "plate", SETTINGS)
    assert (again.inspection.predicted, again.drafted) == (0, 0)


def test_triage_cancelled_before_drafting_keeps_scores(store: Store) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int, stage: str) -> None:
        if stage == "scoring" and done == total and total:
            cancel.set()

    with pytest.raises(CancelledError):
        triage_product(store, "plate", SETTINGS, cancel=cancel, progress=progress)
    product = store.get_product("plate")
    images = store.list_images(product.id)
    assert all(store.latest_prediction(image.id) is not None for image in images)
    assert all(store.latest_explanation(image.id) is None for image in images)


def test_inspect_cli_reports_drafts_and_queue(store: Store, capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", "--product", "plate", "--db", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert "12 draft(s) written" in out and "12 image(s) queued" in out


def test_test_split_goods_stay_out_of_the_references(store: Store) -> None:
    from workstation.services.onboard import normal_images

    product = store.get_product("plate")
    references = normal_images(store, product)
    assert {r.split for r in references} == {"train"}
    test_good = next(
        r for r in store.list_images(product.id, source_label="good") if r.split == "test"
    )
    store.add_review(test_good.id, "normal", reviewer="inspector")
    assert test_good.id in {r.id for r in normal_images(store, product)}


def test_fitting_sets_the_calibrated_threshold_on_the_product(store: Store) -> None:
    assert store.get_product("plate").threshold is None
    triage_product(store, "plate", SETTINGS)
    assert store.get_product("plate").threshold == 1.0
