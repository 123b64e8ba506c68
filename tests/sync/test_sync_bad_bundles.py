"""A damaged or foreign bundle is refused whole, with one line, before anything is written."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from sync_helpers import PRODUCT, add_images, give_feedback, revision_keys

from workstation.__main__ import main
from workstation.core.errors import UserError
from workstation.store.exchange import store_images_dir
from workstation.store.repository import Store
from workstation.sync.bundle import MANIFEST, REVISIONS
from workstation.sync.feedback import export_feedback, import_feedback


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    with Store.open(tmp_path / "source" / "s.sqlite") as source:
        ids = add_images(source, tmp_path / "images", [1, 2, 3])
        give_feedback(source, ids, verdict="anomalous", seed=4)
        return export_feedback(source, PRODUCT, tmp_path / "feedback.zip").path


def _rewrite(bundle: Path, change: Callable[[str, bytes], bytes]) -> Path:
    """A copy of the bundle with members changed (the manifest kept unless changed too)."""
    out = bundle.with_name("changed.zip")
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, change(name, source.read(name)))
    return out


def _truncated(bundle: Path) -> Path:
    out = bundle.with_name("truncated.zip")
    out.write_bytes(bundle.read_bytes()[: bundle.stat().st_size * 2 // 3])
    return out


def _sha_mismatch(bundle: Path) -> Path:
    def change(name: str, data: bytes) -> bytes:
        return data.replace(b"anomalous", b"normal\x20\x20\x20") if name == REVISIONS else data

    return _rewrite(bundle, change)


def _newer_schema(bundle: Path) -> Path:
    def change(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        return json.dumps({**json.loads(data), "schema": 99}).encode()

    return _rewrite(bundle, change)


def _foreign(bundle: Path) -> Path:
    out = bundle.with_name("model.zip")
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(MANIFEST, json.dumps({"format": 1, "name": "dinov2-small"}))
        archive.writestr("config.json", "{}")
    return out


def _member_missing(bundle: Path) -> Path:
    out = bundle.with_name("short.zip")
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            if not name.startswith("masks/"):
                target.writestr(name, source.read(name))
    return out


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated zip": (_truncated, "not a whole zip file"),
    "sha256 mismatch": (_sha_mismatch, "does not match the sha256"),
    "newer schema": (_newer_schema, "bundle schema 99"),
    "foreign bundle": (_foreign, "not a feedback bundle"),
    "member missing": (_member_missing, "does not match its manifest"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_bundle_is_refused_before_anything_is_written(
    tmp_path: Path, bundle: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make, expected = CASES[case]
    bad = make(bundle)
    target = tmp_path / "target" / "t.sqlite"
    with Store.open(target) as store:
        (image_id,) = add_images(store, tmp_path / "own", [9])
        store.add_review(image_id, "normal", reviewer="own")
        before = revision_keys(store), store.list_products(), store.list_images(1)
        with pytest.raises(UserError, match=expected):
            import_feedback(store, bad)
        assert (revision_keys(store), store.list_products(), store.list_images(1)) == before
    assert not store_images_dir(target).exists()

    code = main(["--db", str(target), "sync", "import", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1


def test_the_unchanged_bundle_imports(tmp_path: Path, bundle: Path) -> None:
    with Store.open(tmp_path / "target" / "t.sqlite") as store:
        report = import_feedback(store, bundle)
    assert report.images_added == 3 and report.added == {"mask": 6, "explanation": 3, "review": 3}
