"""``export`` never writes outside its output folder, whatever names the store holds
(a label or product name from an older station's bundle; issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest
from attack_kit import Watch, refused
from sync_helpers import PRODUCT, add_images

from workstation.store.repository import Store


def _store_with(tmp_path: Path, *, label: str | None = None, product: str | None = None) -> Path:
    db = tmp_path / "station" / "s.sqlite"
    with Store.open(db) as store:
        add_images(store, tmp_path / "images", [1, 2])
        conn = store._db().conn
        if label is not None:
            conn.execute("UPDATE images SET source_label = ?, split = 'test'", (label,))
        if product is not None:
            conn.execute("UPDATE products SET name = ?", (product,))
        conn.commit()
    return db


@pytest.mark.parametrize("fmt", ["mvtec", "coco"])
@pytest.mark.parametrize("label", ["../../../escape", "/tmp/escape-abs"])
def test_a_label_cannot_lead_out_of_the_export(
    tmp_path: Path, fmt: str, label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store_with(tmp_path, label=label)
    out = tmp_path / "out"
    watch = Watch(tmp_path, db, [db.parent, out])
    argv = ["--db", str(db), "export", str(out), "--product", PRODUCT, "--format", fmt]
    refused(watch, argv, capsys, words="refusing the path")


@pytest.mark.parametrize("fmt", ["mvtec", "jsonl"])
def test_an_absolute_product_name_cannot_lead_out_of_the_export(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name = str(tmp_path / "sentinel" / "product")
    db = _store_with(tmp_path, product=name)
    out = tmp_path / "out"
    watch = Watch(tmp_path, db, [db.parent, out])
    argv = ["--db", str(db), "export", str(out), "--product", name, "--format", fmt]
    refused(watch, argv, capsys, words="refusing the path")
    assert not (tmp_path / "sentinel").exists()
