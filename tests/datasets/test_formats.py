"""Export formats and the export -> import round trip; COCO RLE encoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import make_mvtec, noise_image

from workstation.core.errors import UserError
from workstation.core.imageio import write_png
from workstation.core.types import Explanation
from workstation.datasets import coco_rle
from workstation.datasets.formats import export_product
from workstation.services.importing import import_directory
from workstation.store.repository import Store


def snapshot(store: Store, product_name: str) -> dict[str, tuple]:
    """Everything a round trip must keep: content hash -> (split, label, size, mask bytes)."""
    product = store.get_product(product_name)
    result = {}
    for image in store.list_images(product.id):
        revision = store.latest_mask_revision(image.id)
        mask = None if revision is None else store.load_mask(revision).tobytes()
        result[image.sha256] = (image.split, image.source_label, image.width, image.height, mask)
    return result


@pytest.fixture
def source(tmp_path: Path) -> Store:
    root = make_mvtec(
        tmp_path / "data" / "widget", train=3, test_good=2, defects={"scratch": 2, "dent": 1}
    )
    for i in range(2):
        write_png(tmp_path / "data" / "widget" / "unlabeled" / f"u{i}.png", noise_image(500 + i))
    store = Store.open(tmp_path / "source.sqlite")
    import_directory(store, root)
    return store


@pytest.mark.parametrize("fmt", ["mvtec", "coco"])
def test_export_then_import_round_trips_exactly(tmp_path: Path, source: Store, fmt: str) -> None:
    before = snapshot(source, "widget")
    report = export_product(source, "widget", tmp_path / "out", format=fmt)
    assert report.images == 10 and report.masks == 3
    with Store.open(tmp_path / "again.sqlite") as again:
        result = import_directory(again, report.path)
        assert result.failures == () and result.warnings == ()
        assert snapshot(again, "widget") == before
        product = again.get_product("widget")
        assert set(product.defect_vocabulary) == {"scratch", "dent"}


def test_export_uses_inspector_masks_and_reviewed_labels(tmp_path: Path, source: Store) -> None:
    product = source.get_product("widget")
    scratch = source.list_images(product.id, source_label="scratch")[0]
    edited = np.zeros((48, 64), np.uint8)
    edited[40:44, 50:60] = 1
    source.add_mask_revision(scratch.id, edited, source="inspector", author="ann")
    source.add_mask_revision(
        scratch.id, np.ones((48, 64), np.uint8), source="expert", author="model"
    )  # not accepted: never exported
    unlabeled = source.list_images(product.id, split="unlabeled")
    source.add_review(unlabeled[0].id, "anomalous", reviewer="ann")
    source.add_explanation(
        unlabeled[0].id,
        Explanation(verdict="anomalous", defect_type="dent"),
        source="inspector",
        author="ann",
    )
    source.add_review(unlabeled[1].id, "normal", reviewer="ann")
    dent = source.list_images(product.id, source_label="dent")[0]
    source.add_review(dent.id, "normal", reviewer="ann", reason="dust, not a dent")

    out = export_product(source, "widget", tmp_path / "out", format="mvtec").path
    mask_file = out / "ground_truth" / "scratch" / f"{Path(scratch.path).stem}_mask.png"
    with Store.open(tmp_path / "again.sqlite") as again:
        import_directory(again, out)
        by_hash = {i.sha256: i for i in again.list_images(again.get_product("widget").id)}
        assert (by_hash[unlabeled[0].sha256].split, by_hash[unlabeled[0].sha256].source_label) == (
            "test",
            "dent",
        )
        assert by_hash[unlabeled[1].sha256].source_label == "good"
        assert by_hash[dent.sha256].source_label == "good"
        mask = again.load_mask(again.latest_mask_revision(by_hash[scratch.sha256].id))
        assert np.array_equal(mask, edited)
    assert mask_file.is_file()


def test_export_refuses_a_non_empty_target(tmp_path: Path, source: Store) -> None:
    export_product(source, "widget", tmp_path / "out", format="mvtec")
    with pytest.raises(UserError, match="not empty"):
        export_product(source, "widget", tmp_path / "out", format="mvtec")
    with pytest.raises(UserError, match="no product"):
        export_product(source, "nothing", tmp_path / "x", format="mvtec")


def test_export_of_a_moved_image_is_a_clear_error(tmp_path: Path, source: Store) -> None:
    image = source.list_images(source.get_product("widget").id)[0]
    Path(image.path).unlink()
    with pytest.raises(UserError, match="gone from disk"):
        export_product(source, "widget", tmp_path / "out", format="mvtec")


def test_coco_document_is_valid(tmp_path: Path, source: Store) -> None:
    out = export_product(source, "widget", tmp_path / "coco", format="coco").path
    document = json.loads((out / "annotations.json").read_text())
    assert len(document["images"]) == 10 and len(document["annotations"]) == 3
    names = {c["id"]: c["name"] for c in document["categories"]}
    for annotation in document["annotations"]:
        image = next(i for i in document["images"] if i["id"] == annotation["image_id"])
        mask = coco_rle.decode(annotation["segmentation"])
        assert mask.shape == (image["height"], image["width"])
        assert annotation["area"] == int(mask.sum())
        assert names[annotation["category_id"]] == image["iad_label"]
        assert (out / image["file_name"]).is_file()


def test_jsonl_chat_pairs(tmp_path: Path, source: Store) -> None:
    product = source.get_product("widget")
    images = source.list_images(product.id)
    source.add_explanation(
        images[0].id,
        Explanation(verdict="anomalous", defect_type="dent", description="a dent near the rim"),
        source="inspector",
        author="ann",
    )
    source.add_explanation(
        images[1].id,
        Explanation(verdict="anomalous", defect_type="scratch"),
        source="template",
        author="template",
    )
    source.add_review(images[1].id, "accepted", reviewer="ann")
    source.add_explanation(
        images[2].id, Explanation(verdict="anomalous"), source="template", author="template"
    )  # never reviewed: not a training pair
    source.add_review(images[3].id, "normal", reviewer="ann")
    report = export_product(source, "widget", tmp_path / "pairs.jsonl", format="jsonl")
    lines = [json.loads(x) for x in report.path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3
    assert {line["image"] for line in lines} == {images[i].path for i in (0, 1, 3)}
    first = next(line for line in lines if line["image"] == images[0].path)
    user, assistant = first["messages"]
    assert user["role"] == "user" and "widget" in user["content"]
    assert json.loads(assistant["content"])["description"] == "a dent near the rim"


def test_rle_known_value() -> None:
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 1
    assert coco_rle.mask_to_counts(mask) == [5, 2, 2, 2, 5]
    assert coco_rle.encode(mask) == {"size": [4, 4], "counts": "52203"}  # as pycocotools
    assert coco_rle.bbox(mask) == [1, 1, 2, 2]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.floats(0, 1))
def test_rle_round_trips(height: int, width: int, seed: int, density: float) -> None:
    mask = (np.random.default_rng(seed).random((height, width)) < density).astype(np.uint8)
    encoded = coco_rle.encode(mask)
    assert np.array_equal(coco_rle.decode(encoded), mask)
    counts = coco_rle.mask_to_counts(mask)
    assert np.array_equal(coco_rle.decode({"size": [height, width], "counts": counts}), mask)


def test_rle_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="sum"):
        coco_rle.decode({"size": [2, 2], "counts": [1, 1]})
