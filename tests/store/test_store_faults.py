"""Storage faults end in one line with the path and the fix, exit code 2, and lose nothing.

Each test breaks one thing for real where the machine allows it (see the ``read_only``
fixture for how read-only files are made as root) and checks three things: the kind of
message, the exit code, and that the store still holds everything it held before.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import corrupt_page_of, make_mvtec

import workstation.store.base as base
from workstation.__main__ import main
from workstation.faults import log_file
from workstation.store.repository import Store


def imported_store(tmp_path: Path, *, train: int = 3) -> Path:
    db = tmp_path / "store" / "s.sqlite"
    assert main(["--db", str(db), "import", str(make_mvtec(tmp_path / "bottle", train=train))]) == 0
    return db


def snapshot(db: Path) -> tuple[object, ...]:
    """Everything a person would miss: products, images, their masks and the blobs."""
    with Store.open(db) as store:
        rows = []
        for product in store.list_products():
            for image in store.list_images(product.id):
                revision = store.latest_mask_revision(image.id)
                mask = None if revision is None else store.load_mask(revision).sum()
                rows.append((product.name, image.name, image.split, mask))
        return tuple(rows)


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def stored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, tuple[object, ...]]:
    """A store with one imported product, and its snapshot before the fault."""
    db = imported_store(tmp_path)
    capsys.readouterr()
    return db, snapshot(db)


def test_a_read_only_store_file_is_read_but_not_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    read_only: Callable[[Path], str],
    stored: tuple[Path, tuple[object, ...]],
) -> None:
    db, before = stored
    read_only(db)
    other = make_mvtec(tmp_path / "cable", seed=7)
    assert main(["--db", str(db), "import", str(other)]) == 2
    line = error_line(capsys)
    assert "is read-only" in line and str(db) in line and "writable" in line
    # Reading still works: export is not refused because nobody may write.
    assert main(["--db", str(db), "export", str(tmp_path / "out"), "--product", "bottle"]) == 0
    assert snapshot(db) == before


def test_a_new_store_in_a_read_only_folder_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], read_only: Callable[[Path], str]
) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    read_only(folder)
    data = make_mvtec(tmp_path / "bottle")
    assert main(["--db", str(folder / "new.sqlite"), "import", str(data)]) == 2
    line = error_line(capsys)
    assert "cannot open the store" in line and str(folder / "new.sqlite") in line
    assert list(folder.iterdir()) == []


def test_a_rejected_db_leaves_no_blobs_folder_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a store\n" * 100)
    assert main(["--db", str(notes), "import", str(make_mvtec(tmp_path / "bottle"))]) == 2
    assert "is not a workstation store" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bottle", "notes.txt"]
    assert notes.read_text() == "not a store\n" * 100


def test_export_into_a_file_or_an_unwritable_folder_is_refused_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    read_only: Callable[[Path], str],
    stored: tuple[Path, tuple[object, ...]],
) -> None:
    db, before = stored
    target = tmp_path / "report.txt"
    target.write_text("keep me")
    assert main(["--db", str(db), "export", str(target), "--product", "bottle"]) == 2
    line = error_line(capsys)
    assert f"{target} is a file where a folder is needed" in line
    assert target.read_text() == "keep me"

    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    assert main(["--db", str(db), "export", str(locked), "--product", "bottle"]) == 2
    line = error_line(capsys)
    assert "permission denied" in line and str(locked) in line
    assert snapshot(db) == before


def test_disk_full_in_the_store_rolls_back_the_batch_and_the_import_resumes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stored: tuple[Path, tuple[object, ...]],
) -> None:
    db, before = stored
    real_connect = base.connect

    def small_disk(path: Path):  # type: ignore[no-untyped-def]
        # SQLite's own "database or disk is full": the file may grow by two pages only.
        db = real_connect(path)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 2}")
        return db

    monkeypatch.setattr(base, "connect", small_disk)
    big = make_mvtec(tmp_path / "cable", train=60, seed=7)
    assert main(["--db", str(db), "import", str(big)]) == 2
    line = error_line(capsys)
    assert "is full" in line and str(db) in line and "free some space" in line
    monkeypatch.setattr(base, "connect", real_connect)
    with Store.open(db) as store:
        assert store.check_integrity() == []  # no half batch, no orphan blob
    after = snapshot(db)
    assert after[: len(before)] == before
    assert main(["--db", str(db), "import", str(big)]) == 0  # space freed: it completes
    assert len(snapshot(db)) == len(before) + 64


def test_disk_full_while_exporting_names_the_file_and_leaves_no_partial_copy(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stored: tuple[Path, tuple[object, ...]],
) -> None:
    db, before = stored

    def no_space(source: str, target: str | Path) -> None:
        Path(target).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr("workstation.datasets.formats.shutil.copyfile", no_space)
    out = tmp_path / "out"
    assert main(["--db", str(db), "export", str(out), "--product", "bottle"]) == 2
    line = error_line(capsys)
    assert line.startswith("error: the disk is full (writing ") and str(out) in line
    assert not [p for p in out.rglob("*") if p.is_file()]
    assert snapshot(db) == before


def test_a_damaged_store_says_so_and_names_doctor_and_repair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_mvtec(tmp_path / "bottle", train=40)
    db = tmp_path / "store" / "s.sqlite"
    assert main(["--db", str(db), "import", str(data)]) == 0
    corrupt_page_of(db, b"train/good/0")
    capsys.readouterr()
    for argv in (["import", str(data)], ["export", str(tmp_path / "out"), "--product", "bottle"]):
        assert main(["--db", str(db), *argv]) == 2
        line = error_line(capsys)
        assert "is damaged" in line and str(db) in line
        assert "doctor --db" in line and "repair --db" in line


def test_an_unexpected_error_is_one_line_and_its_trace_goes_to_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("workstation.services.importing.import_directory", broken)
    data = make_mvtec(tmp_path / "bottle")
    assert main(["--db", str(tmp_path / "s.sqlite"), "import", str(data)]) == 1
    line = error_line(capsys)
    assert "unexpected ZeroDivisionError: a bug" in line and str(log_file()) in line
    logged = log_file().read_text()
    assert "Traceback" in logged and "ZeroDivisionError: a bug" in logged
