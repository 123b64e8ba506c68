"""Importing folders: layouts, product files, idempotency, bad files listed, cancel."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from store_helpers import make_mvtec, noise_image, square_mask

from workstation.core.errors import UserError
from workstation.core.imageio import write_png
from workstation.datasets.layouts import plan_import
from workstation.services.importing import import_directory
from workstation.store.repository import Store


def test_mvtec_category_imports_splits_labels_and_ground_truth(
    tmp_path: Path, store: Store
) -> None:
    root = make_mvtec(tmp_path / "bottle", train=3, test_good=2, defects={"scratch": 2, "dent": 1})
    seen: list[tuple[int, int]] = []
    report = import_directory(store, root, progress=lambda d, t: seen.append((d, t)))
    assert report.failures == () and report.added == 8
    assert seen[-1] == (8, 8)
    product = store.get_product("bottle")
    assert set(product.defect_vocabulary) == {"scratch", "dent"}
    counts = store.split_label_counts(product.id)
    assert counts == {
        ("train", "good"): 3,
        ("test", "good"): 2,
        ("test", "scratch"): 2,
        ("test", "dent"): 1,
    }
    for image in store.list_images(product.id, source_label="scratch"):
        revision = store.latest_mask_revision(image.id, sources=("ground_truth",))
        assert revision is not None and revision.author == "import"
        index = int(Path(image.path).stem)
        expected = square_mask(box=(2 + index, 3, 20 + index, 30))
        assert np.array_equal(store.load_mask(revision), expected)
    good = store.list_images(product.id, source_label="good")[0]
    assert store.latest_mask_revision(good.id) is None


def test_import_twice_adds_nothing(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "cat")
    first = import_directory(store, root)
    second = import_directory(store, root)
    assert first.added == 7 and second.added == 0 and second.existing == 7
    product = store.get_product("cat")
    assert sum(len(store.mask_history(i.id)) for i in store.list_images(product.id)) == 2


def test_mvtec_root_imports_one_product_per_category(tmp_path: Path, store: Store) -> None:
    make_mvtec(tmp_path / "root" / "bottle", seed=1)
    make_mvtec(tmp_path / "root" / "screw", seed=2)
    report = import_directory(store, tmp_path / "root")
    assert sorted(p.product.name for p in report.products) == ["bottle", "screw"]
    with pytest.raises(UserError, match="2 MVTec categories"):
        plan_import(tmp_path / "root", product="one")


def test_product_file_sets_name_description_rules_vocabulary(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "folder")
    (root / "product.toml").write_text(
        'name = "Steel plate"\ndescription = "A rolled plate"\n'
        'normality_rules = ["grain runs left to right"]\ndefect_vocabulary = ["scratch", "rust"]\n',
        encoding="utf-8",
    )
    import_directory(store, root)
    product = store.get_product("Steel plate")
    assert product.description == "A rolled plate"
    assert product.normality_rules == ("grain runs left to right",)
    assert product.defect_vocabulary == ("scratch", "rust")
    # --product wins over the file's name
    other = Store.open(tmp_path / "other.sqlite")
    import_directory(other, root, product="renamed")
    assert other.get_product("renamed").description == "A rolled plate"
    other.close()


def test_bad_product_file_is_a_clear_error(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "folder")
    (root / "product.json").write_text('{"normality_rules": "not a list"}', encoding="utf-8")
    with pytest.raises(UserError, match="normality_rules must be a list"):
        plan_import(root)


def test_anomalib_folder_layout(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "folder ds"
    for i in range(3):
        write_png(root / "normal" / f"n{i}.png", noise_image(i))
    write_png(root / "abnormal" / "a0.png", noise_image(10))
    write_png(root / "abnormal" / "crack" / "c0.png", noise_image(11))
    write_png(root / "mask" / "a0.png", square_mask() * 255)
    write_png(root / "mask" / "crack" / "c0_mask.png", square_mask() * 255)
    report = import_directory(store, root)
    assert report.products[0].layout == "folder" and report.failures == ()
    product = store.get_product("folder ds")
    counts = store.split_label_counts(product.id)
    assert counts == {("train", "good"): 3, ("test", "abnormal"): 1, ("test", "crack"): 1}
    assert report.products[0].masks == 2


def test_flat_folder_is_unlabeled(tmp_path: Path, store: Store) -> None:
    for i in range(3):
        write_png(tmp_path / "shots" / f"{i}.png", noise_image(i))
    (tmp_path / "shots" / "notes.txt").write_text("ignored")
    report = import_directory(store, tmp_path / "shots", product="line 4")
    assert report.products[0].layout == "flat"
    assert store.split_label_counts(store.get_product("line 4").id) == {("unlabeled", None): 3}


def test_unknown_layout_names_the_expected_layouts(tmp_path: Path, store: Store) -> None:
    (tmp_path / "random" / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "random" / "readme.txt").write_text("hello")
    with pytest.raises(UserError) as caught:
        import_directory(store, tmp_path / "random")
    message = str(caught.value)
    for word in ("not a known dataset layout", "MVTec", "Folder", "flat"):
        assert word in message
    with pytest.raises(UserError, match="does not exist"):
        import_directory(store, tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(UserError, match="is a file"):
        import_directory(store, tmp_path / "file.png")


def test_bad_images_are_listed_and_the_rest_imports(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "cat", train=3)
    good = root / "train" / "good"
    (good / "zero.png").write_bytes(b"")
    data = (good / "000.png").read_bytes()
    (good / "truncated.png").write_bytes(data[: len(data) // 3])
    (good / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + b"junk" * 50)
    report = import_directory(store, root)
    assert report.added == 7
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert set(reasons) == {"zero.png", "truncated.png", "corrupt.jpg"}
    assert "empty" in reasons["zero.png"] and "truncated" in reasons["truncated.png"]


def test_mask_size_mismatch_keeps_the_image_and_reports_the_mask(
    tmp_path: Path, store: Store
) -> None:
    root = make_mvtec(tmp_path / "cat", defects={"dent": 1})
    write_png(root / "ground_truth" / "dent" / "000_mask.png", np.zeros((10, 10), np.uint8))
    report = import_directory(store, root)
    (failure,) = report.failures
    assert failure.path.endswith("000_mask.png")
    assert "10x10 pixels but its image is 64x48" in failure.reason
    dent = store.list_images(store.get_product("cat").id, source_label="dent")
    assert len(dent) == 1 and store.latest_mask_revision(dent[0].id) is None


def test_non_binary_mask_is_thresholded_with_a_warning(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "cat", defects={"dent": 1})
    soft = square_mask() * 255
    soft[30, :] = 90  # grey: below half, background
    write_png(root / "ground_truth" / "dent" / "000_mask.png", soft)
    report = import_directory(store, root)
    assert report.failures == ()
    (warning,) = report.warnings
    assert "not binary" in warning and "000_mask.png" in warning
    image = store.list_images(store.get_product("cat").id, source_label="dent")[0]
    mask = store.load_mask(store.latest_mask_revision(image.id))
    assert np.array_equal(mask, square_mask())


def test_spaces_and_non_ascii_paths(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "Prüf teile 検査" / "Schraube M8")
    shutil.move(root / "train" / "good" / "000.png", root / "train" / "good" / "bild ä 1.png")
    dent = root / "test" / "scratch"
    shutil.move(dent / "000.png", dent / "teil [1] ß.png")  # glob characters in a name
    shutil.move(
        root / "ground_truth" / "scratch" / "000_mask.png",
        root / "ground_truth" / "scratch" / "teil [1] ß_mask.png",
    )
    report = import_directory(store, root)
    assert report.failures == () and report.added == 7 and report.products[0].masks == 2
    names = {i.name for i in store.list_images(store.get_product("Schraube M8").id)}
    assert {"bild ä 1.png", "teil [1] ß.png"} <= names


def test_16_bit_tiff_and_other_formats_import(tmp_path: Path, store: Store) -> None:
    import cv2

    root = tmp_path / "mixed"
    root.mkdir()
    cv2.imwrite(str(root / "deep.tif"), (np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16))
    cv2.imwrite(str(root / "a.bmp"), noise_image(1))
    cv2.imwrite(str(root / "b.jpg"), noise_image(2))
    rgba = np.dstack([noise_image(3), np.full((48, 64), 200, np.uint8)])
    write_png(root / "c.png", rgba)
    report = import_directory(store, root)
    assert report.failures == () and report.added == 4
    sizes = {(i.width, i.height) for i in store.list_images(report.products[0].product.id)}
    assert sizes == {(64, 48)}


def test_large_image_imports(tmp_path: Path, store: Store) -> None:
    import cv2

    root = tmp_path / "large"
    root.mkdir()
    big = np.zeros((10_000, 10_000), np.uint8)
    big[:, ::50] = 255
    assert cv2.imwrite(str(root / "panel.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 70])
    del big
    report = import_directory(store, root)
    (image,) = store.list_images(report.products[0].product.id)
    assert (image.width, image.height) == (10_000, 10_000)


def test_cancel_keeps_finished_batches(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "cat", train=10, test_good=0, defects={})
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 4:
            cancel.set()

    report = import_directory(store, root, progress=progress, cancel=cancel, batch_size=4)
    assert report.cancelled and report.added == 4
    assert import_directory(store, root).added == 6


def test_folder_without_images(tmp_path: Path, store: Store) -> None:
    (tmp_path / "cat" / "train" / "good").mkdir(parents=True)
    with pytest.raises(UserError, match="no PNG, JPEG"):
        import_directory(store, tmp_path / "cat")


def test_coco_file_with_polygons_imports(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "coco"
    write_png(root / "img" / "a.png", noise_image(5))
    document = {
        "images": [{"id": 7, "file_name": "img/a.png", "width": 64, "height": 48}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 2,
                "segmentation": [[10, 10, 20, 10, 20, 20, 10, 20]],
            }
        ],
        "categories": [{"id": 2, "name": "chip"}],
    }
    (root / "annotations.json").write_text(json.dumps(document))
    report = import_directory(store, root, product="coco thing")
    (image,) = store.list_images(report.products[0].product.id)
    assert (image.split, image.source_label) == ("test", "chip")
    mask = store.load_mask(store.latest_mask_revision(image.id))
    assert mask[15, 15] == 1 and mask[30, 30] == 0


def test_reimport_adds_ground_truth_that_arrived_later(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "cat", defects={"dent": 2})
    shutil.move(root / "ground_truth", tmp_path / "later")
    import_directory(store, root)
    dents = store.list_images(store.get_product("cat").id, source_label="dent")
    assert all(store.latest_mask_revision(i.id) is None for i in dents)
    shutil.move(tmp_path / "later", root / "ground_truth")
    assert import_directory(store, root).added == 0
    assert all(store.latest_mask_revision(i.id, sources=("ground_truth",)) for i in dents)
    import_directory(store, root)  # and never twice
    assert all(len(store.mask_history(i.id)) == 1 for i in dents)


def test_reimport_of_a_moved_folder_updates_the_paths(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "cat")
    import_directory(store, root)
    moved = tmp_path / "archive" / "cat"
    moved.parent.mkdir()
    shutil.move(root, moved)
    report = import_directory(store, moved)
    assert report.added == 0 and report.existing == 7
    for image in store.list_images(store.get_product("cat").id):
        assert Path(image.path).is_file() and str(moved) in image.path


def test_import_dot_and_dotdot_name_the_product_after_the_real_folder(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_mvtec(tmp_path / "bottle")
    monkeypatch.chdir(root)
    report = import_directory(store, ".")
    assert [p.product.name for p in report.products] == ["bottle"]
    monkeypatch.chdir(root / "train")
    again = import_directory(store, "..")
    assert [p.product.name for p in again.products] == ["bottle"] and again.added == 0
    assert [p.name for p in store.list_products()] == ["bottle"]  # no product named ".."


def test_a_defect_image_without_its_mask_is_imported_with_a_warning(
    tmp_path: Path, store: Store
) -> None:
    root = make_mvtec(tmp_path / "bottle", defects={"scratch": 3})
    (root / "ground_truth" / "scratch" / "001_mask.png").unlink()
    report = import_directory(store, root)
    assert report.added == 3 + 2 + 3 and report.products[0].masks == 2
    (warning,) = report.warnings
    assert "1 defect image(s) have no mask" in warning and "001.png" in warning
    assert str(root / "test" / "scratch") in warning


def test_a_symbolic_link_loop_is_listed_as_skipped(tmp_path: Path, store: Store) -> None:
    root = make_mvtec(tmp_path / "bottle")
    loop = root / "train" / "good" / "loop.png"
    loop.symlink_to(loop.name)
    dangling = root / "test" / "good" / "gone.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    report = import_directory(store, root)
    assert report.added == 7
    reasons = {f.path: f.reason for f in report.failures}
    assert "loops back on itself" in reasons[str(loop)]
    assert "which does not exist" in reasons[str(dangling)]
