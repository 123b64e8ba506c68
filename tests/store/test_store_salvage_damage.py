"""``repair`` on stores cut short and with bytes flipped: what SQLite can still read is
saved (rows of lost table pages rebuilt from the indexes), the rest is reported, and a
damaged schema text is a clear store fault (issue 20). The numbers per case are in
docs/benchmarks.md (``iad-workstation bench damage``)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from store_helpers import make_mvtec

from workstation.__main__ import main
from workstation.store.repository import Store

IMAGES = 120 + 2 + 2


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("intact")
    db = root / "store" / "s.sqlite"
    data = make_mvtec(root / "bottle", train=120)
    assert main(["--db", str(db), "import", str(data)]) == 0
    with Store.open(db) as store:
        for image in store.list_images(store.get_product("bottle").id)[:40]:
            store.add_review(image.id, "normal", reviewer="inspector")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def _damaged(intact: Path, tmp_path: Path, damage: str, seed: int = 0) -> Path:
    db = tmp_path / "store" / "s.sqlite"
    shutil.copytree(intact.parent, db.parent)
    db.with_name("s.sqlite-wal").unlink(missing_ok=True)
    db.with_name("s.sqlite-shm").unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    if damage == "last-page":
        del data[-4096:]
    elif damage == "quarter":
        del data[len(data) * 3 // 4 // 4096 * 4096 :]
    elif damage == "flips":
        rng = np.random.default_rng(seed)
        for offset in rng.integers(len(data) // 2, len(data), 48):
            data[int(offset)] = int(rng.integers(0, 256))
    else:  # schema text no longer UTF-8
        where = re.search(rb"CREATE TABLE \W?images\W", data).start()  # type: ignore[union-attr]
        for offset in range(where + 6, where + 40, 4):
            data[offset] = 0xFF
    db.write_bytes(bytes(data))
    return db


def _salvaged(db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    new = db.parent.parent / "new" / "new.sqlite"
    capsys.readouterr()
    code = main(["repair", str(new), "--db", str(db)])
    out = capsys.readouterr()
    assert code in (0, 1), out.err  # 1: something was lost, and the report says what
    assert "a bug" not in out.err
    with Store.open(new) as store:
        assert store.check_integrity() == []
        images = store.count_images(store.get_product("bottle").id)
    return images, out.out


def test_the_last_page_cut_off_loses_almost_nothing(
    intact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, report = _salvaged(_damaged(intact, tmp_path, "last-page"), capsys)
    assert images >= 0.95 * IMAGES, report
    assert "% saved)" in report


def test_a_quarter_cut_off_is_salvaged_as_far_as_it_reads(
    intact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, report = _salvaged(_damaged(intact, tmp_path, "quarter"), capsys)
    assert "rows:" in report and images <= IMAGES


@pytest.mark.parametrize("seed", range(4))
def test_random_flips_never_stop_the_salvage(
    intact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int
) -> None:
    images, report = _salvaged(_damaged(intact, tmp_path, "flips", seed), capsys)
    assert "datatype mismatch" not in report and images > 0


def test_a_damaged_schema_text_is_a_store_fault_and_repair_restores_it(
    intact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _damaged(intact, tmp_path, "schema")
    assert main(["--db", str(db), "export", str(tmp_path / "out"), "--product", "bottle"]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and "repair --db" in err and "UnicodeDecodeError" not in err
    main(["--db", str(db), "doctor"])
    report = capsys.readouterr().out
    assert "[FAIL] store pages" in report and "malformed database schema" in report
    assert "reinstall the application" not in report
    images, out = _salvaged(db, capsys)
    assert images == IMAGES and "damaged schema entries were put right" in out
