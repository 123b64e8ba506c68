"""``doctor`` finds damage in a store without changing it; ``repair`` salvages it.

The damage is real: a page of the images table is overwritten in the file, an array
file is deleted or garbled, a model folder is edited after it was registered.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import corrupt_page_of, make_mvtec

import workstation.doctor as doctor
from workstation.__main__ import main
from workstation.store.blobs import store_blobs_dir
from workstation.store.health import check_store_health
from workstation.store.repository import Store

IMAGES = 40 + 2 + 2  # make_mvtec(train=40): train/good, test/good, test/scratch


@pytest.fixture
def store_checks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor's store checks only (the Qt probe and the model checks take seconds)."""
    monkeypatch.setattr(doctor, "DEFAULT_CHECKS", (doctor.check_store, doctor.check_store_damage))


def imported(tmp_path: Path) -> Path:
    db = tmp_path / "store" / "s.sqlite"
    assert main(["--db", str(db), "import", str(make_mvtec(tmp_path / "bottle", train=40))]) == 0
    return db


def fingerprint(db: Path) -> dict[str, str]:
    """Hash of the store file, its write-ahead log (if it holds anything) and its arrays.

    SQLite's ``-shm`` index and an empty ``-wal`` are made by any reader of a WAL store,
    a read-only one included; they hold no data.
    """
    wal = db.with_name(db.name + "-wal")
    files = [db, *([wal] if wal.is_file() and wal.stat().st_size else [])]
    files += store_blobs_dir(db).rglob("*")
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files) if p.is_file()
    }


def test_doctor_names_a_damaged_page_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store_checks_only: None
) -> None:
    db = imported(tmp_path)
    assert main(["doctor", "--db", str(db)]) == 0  # --db after the command works too
    assert "[ OK ] store pages" in capsys.readouterr().out
    corrupt_page_of(db, b"train/good/01")
    before = fingerprint(db)
    for argv in (["doctor", "--db", str(db)], ["--db", str(db), "doctor", "--deep"]):
        assert main(argv) == 1
        out = capsys.readouterr().out
        assert "[FAIL] store pages" in out and "malformed" in out
        assert f"repair --db {db}" in out
    assert fingerprint(db) == before  # the doctor only looked


def test_repair_salvages_every_readable_row_and_never_touches_the_original(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workstation.store.salvage.shutil.which", lambda _name: None)
    db = imported(tmp_path)
    corrupt_page_of(db, b"train/good/01")
    # Commands that meet the damage stop with a line and lose nothing more.
    for argv in (["import", str(tmp_path / "bottle")], ["export", str(tmp_path / "o"),
                 "--product", "bottle"]):
        assert main(["--db", str(db), *argv]) == 2
    before = fingerprint(db)
    capsys.readouterr()
    new = tmp_path / "repaired" / "new.sqlite"
    # The lost page's rows come back from the indexes, their files found by hash.
    assert main(["repair", str(new), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("images:"))
    assert line.strip().startswith(f"images: {IMAGES} copied"), line
    rebuilt = int(line.split("copied, ")[1].split()[0])
    assert rebuilt > 0 and f"; {rebuilt} image files found again by hash" in line
    assert "the sqlite3 command is not installed" in out
    assert fingerprint(db) == before
    with Store.open(new) as store:
        assert store.check_integrity() == []
        product = store.get_product("bottle")
        images = store.list_images(product.id)
        assert len(images) == IMAGES and all(Path(i.path).is_file() for i in images)
        masks = [store.latest_mask_revision(i.id) for i in images if i.source_label == "scratch"]
        assert len(masks) == 2 and all(store.load_mask(m).any() for m in masks if m)
    assert main(["repair", str(new), "--db", str(db)]) == 2  # never over an existing store
    assert "exists already" in capsys.readouterr().err


def test_sqlite_recover_fills_in_what_the_scans_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a working ``.recover`` (stood in for by a script printing what SQLite's own
    recovery of the intact file would print), no row is lost."""
    import sqlite3

    db = imported(tmp_path)
    intact = sqlite3.connect(db)
    script = "BEGIN;\n" + "\n".join(intact.iterdump())[len("BEGIN TRANSACTION;") :] + "\n"
    intact.close()
    dump = tmp_path / "recovered.sql"
    dump.write_text(script.rstrip().removesuffix("COMMIT;") + "COMMIT;\n")
    fake = tmp_path / "bin" / "sqlite3"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ncat '{dump}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    corrupt_page_of(db, b"train/good/01")
    new = tmp_path / "new.sqlite"
    assert main(["repair", str(new), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "nothing was lost" in out and "by sqlite3 .recover" in out
    with Store.open(new) as store:
        assert len(store.list_images(store.get_product("bottle").id)) == IMAGES


def test_doctor_checks_write_access_arrays_and_model_folders(
    tmp_path: Path, read_only: Callable[[Path], str]
) -> None:
    db = imported(tmp_path)
    with Store.open(db) as store:
        product = store.get_product("bottle")
        folder = store.new_model_folder()
        (folder / "adapter.safetensors").write_bytes(b"weights")
        adapter = store.add_model_version(product.id, kind="adapter", state="active", files=folder)
        revision = store.latest_mask_revision(store.list_images(product.id)[-1].id)
        assert revision is not None
        blob = store.blobs.path_of(revision.blob)
    assert all(f.ok for f in check_store_health(db, deep=True))

    assert blob is not None
    blob.write_bytes(blob.read_bytes()[:-4] + b"\x00\x00\x00\x00")  # same size, other bytes
    assert all(f.ok for f in check_store_health(db))  # only --deep re-hashes arrays
    found = {f.name: f for f in check_store_health(db, deep=True)}
    assert not found["blobs"].ok and "does not match its hash" in found["blobs"].detail
    blob.unlink()
    found = {f.name: f for f in check_store_health(db)}
    assert not found["blobs"].ok and "missing" in found["blobs"].detail

    (Path(adapter.path or "") / "adapter.safetensors").write_bytes(b"other weights")
    model = {f.name: f for f in check_store_health(db)}[f"model {adapter.name}"]
    assert not model.ok and model.severity == "required"
    assert "changed after it was registered" in model.detail and "rollback" in model.fix

    read_only(db)
    writable = {f.name: f for f in check_store_health(db)}["store writable"]
    assert not writable.ok and str(db) in writable.detail
