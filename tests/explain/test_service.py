"""Explaining stored images: inputs gathered from the store, revisions appended."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from workstation.config import ExplainerSettings
from workstation.core.errors import MissingModelError, UserError
from workstation.core.imageio import write_png
from workstation.explain.result import TemplateExplainer
from workstation.services import explain as service
from workstation.store.repository import Store


def add_image(store: Store, product_id: int, path: Path, seed: int, split: str = "test") -> int:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    write_png(path, pixels)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    record, _ = store.add_image(
        product_id, path=path, sha256=sha, width=64, height=48, split=split, source_label=None
    )
    return record.id


@pytest.fixture
def setup(tmp_path: Path):
    store = Store.open(tmp_path / "db.sqlite")
    product = store.create_product("screw", defect_vocabulary=("pitting",))
    add_image(store, product.id, tmp_path / "normal.png", 1, split="train")
    image_id = add_image(store, product.id, tmp_path / "part.png", 2)
    values = np.zeros((48, 64), np.float32)
    values[40:44, 2:6] = 2.5
    store.add_prediction(
        image_id, model_version="experts-1", score=2.5, anomalous=True, anomaly_map=values
    )
    yield store, product, image_id
    store.close()


def test_template_explanation_is_stored_as_revision(setup) -> None:
    store, _, image_id = setup
    request = service.build_request(store, image_id)
    assert request.reference is not None and request.mask is None
    stored = service.explain_image(store, image_id, TemplateExplainer())
    assert stored.revision.source == "template"
    assert stored.revision.model_version == "experts-1"
    assert stored.revision.explanation.defect_type == "pitting"
    assert stored.revision.explanation.location == "lower left"
    again = service.explain_image(store, image_id, TemplateExplainer())
    assert again.revision.parent_id == stored.revision.id
    assert len(store.explanation_history(image_id)) == 2


def test_inspector_mask_replaces_the_map(setup) -> None:
    store, _, image_id = setup
    mask = np.zeros((48, 64), np.uint8)
    mask[0:10, 50:64] = 1
    store.add_mask_revision(image_id, mask, source="inspector", author="ann")
    stored = service.explain_image(store, image_id, TemplateExplainer())
    assert stored.revision.explanation.location == "upper right"


def test_image_without_prediction_is_user_error(setup, tmp_path: Path) -> None:
    store, product, _ = setup
    bare = add_image(store, product.id, tmp_path / "bare.png", 3)
    with pytest.raises(UserError, match="no anomaly map"):
        service.explain_image(store, bare, TemplateExplainer())


def test_settings_choose_the_explainer(setup) -> None:
    store, product, _ = setup
    assert service.vlm_name(ExplainerSettings(kind="template")) is None
    assert service.vlm_name(ExplainerSettings(kind="vlm", vlm="qwen2-vl-2b")) == "qwen2-vl-2b"
    assert service.vlm_name(ExplainerSettings(kind="smolvlm")) == "smolvlm"
    explainer = service.create_product_explainer(store, product, ExplainerSettings())
    assert explainer.source == "template"
    with pytest.raises(MissingModelError):
        service.create_product_explainer(
            store, product, ExplainerSettings(kind="vlm", vlm="qwen2.5-vl-3b"), device="cpu"
        )


def test_bad_explainer_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="max_new_tokens"):
        ExplainerSettings(max_new_tokens=0)
    with pytest.raises(UserError, match="image_side"):
        ExplainerSettings(image_side=10)
