"""SIGKILL in the middle of an import and of a mask save: the store reopens consistent.

A child process does the work and kills itself with SIGKILL at a chosen point (patched in
the child only, so production code carries no test hooks): after a blob's temp file is
written but before its rename, or after the rows and blobs of a transaction are written
but before its commit. The parent then reopens the store and checks it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from store_helpers import make_mvtec

from workstation.services.importing import import_directory
from workstation.store.repository import Store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")

KILL_BEFORE_COMMIT = """
import contextlib, os, signal
from workstation.store import base
real = base.write_transaction
calls = {"n": 0}

@contextlib.contextmanager
def dying(db):
    with real(db) as conn:
        yield conn
        calls["n"] += 1
        if calls["n"] == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)  # rows and blobs written, no COMMIT

base.write_transaction = dying
"""

KILL_BEFORE_RENAME = """
import os, signal
real_replace = os.replace
calls = {"n": 0}

def dying_replace(src, dst):
    calls["n"] += 1
    if calls["n"] == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)  # temp file complete, never renamed
    real_replace(src, dst)

os.replace = dying_replace
"""


def run_child(body: str, hook: str, kill_at: int) -> None:
    code = f"KILL_AT = {kill_at}\n{hook}\n{textwrap.dedent(body)}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def mask_for(n: int) -> np.ndarray:
    mask = np.zeros((48, 64), np.uint8)
    mask[n % 40 : n % 40 + 5, 10:20] = 1
    return mask


@pytest.fixture
def one_image_store(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "crash.sqlite"
    with Store.open(path) as store:
        product = store.create_product("p")
        record, _ = store.add_image(
            product.id,
            path="/x.png",
            sha256="f" * 64,
            width=64,
            height=48,
            split="test",
            source_label="dent",
        )
    return path, record.id


MASK_SAVES = """
import sys
import numpy as np
from workstation.store.repository import Store
store = Store.open(DB)
for n in range(50):
    mask = np.zeros((48, 64), np.uint8)
    mask[n % 40 : n % 40 + 5, 10:20] = 1
    store.add_mask_revision(IMAGE, mask, source="inspector", author="ann")
"""


@pytest.mark.parametrize(
    "hook,kill_at",
    # renames count blob writes only; transactions also count the blob clean-up on open
    [(KILL_BEFORE_RENAME, 4), (KILL_BEFORE_COMMIT, 5)],
    ids=["before-rename", "before-commit"],
)
def test_kill_during_mask_save(one_image_store: tuple[Path, int], hook: str, kill_at: int) -> None:
    path, image_id = one_image_store
    body = f"DB = {str(path)!r}\nIMAGE = {image_id}\n" + MASK_SAVES
    run_child(body, hook, kill_at=kill_at)
    with Store.open(path) as store:
        assert store.check_integrity() == []
        history = store.mask_history(image_id)
        assert len(history) == 3  # the three finished saves, nothing of the fourth
        for n, revision in enumerate(history):
            assert np.array_equal(store.load_mask(revision), mask_for(n))
        store.add_mask_revision(image_id, mask_for(3), source="inspector", author="ann")
        assert len(store.mask_history(image_id)) == 4


def test_kill_during_import_keeps_finished_batches(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "cat", train=8, test_good=4, defects={"dent": 8})
    path = tmp_path / "import.sqlite"
    body = f"""
    from workstation.services.importing import import_directory
    from workstation.store.repository import Store
    store = Store.open({str(path)!r})
    import_directory(store, {str(root)!r}, batch_size=4)
    """
    # write 1 is the blob clean-up on open, 2 creates the product, 3.. are image batches:
    # die inside the third batch
    run_child(body, KILL_BEFORE_COMMIT, kill_at=5)
    with Store.open(path) as store:
        assert store.check_integrity() == []
        product = store.get_product("cat")
        images = store.list_images(product.id)
        assert len(images) == 8  # two whole batches of four
        for image in images:
            if image.source_label == "dent":
                assert store.latest_mask_revision(image.id, sources=("ground_truth",))
        report = import_directory(store, root, batch_size=4)
        assert report.added == 12 and report.existing == 8
        assert store.check_integrity() == []


def test_temp_files_of_live_writers_are_kept(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite") as store:
        folder = store.blobs.root / "ab"
        folder.mkdir(parents=True)
        mine = folder / f".tmp-{os.getpid()}-x.npy"
        mine.write_bytes(b"in progress")
        dead = folder / ".tmp-999999999-y.npy"
        dead.write_bytes(b"left over")
        assert store.blobs.remove_stale_temps() == 1
        assert mine.exists() and not dead.exists()


def test_kill_at_an_unplanned_moment_during_import(tmp_path: Path) -> None:
    """No patching: the parent kills the child as soon as it sees rows appear."""
    import time

    root = make_mvtec(tmp_path / "cat", train=20, test_good=0, defects={"dent": 20})
    path = tmp_path / "import.sqlite"
    Store.open(path).close()
    code = (
        "from workstation.services.importing import import_directory\n"
        "from workstation.store.repository import Store\n"
        f"store = Store.open({str(path)!r})\n"
        f"import_directory(store, {str(root)!r}, batch_size=2, workers=1)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2])
    try:
        with Store.open(path) as watcher:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and child.poll() is None:
                product = watcher.find_product("cat")
                if product is not None and len(watcher.list_images(product.id)) >= 4:
                    break
                time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    with Store.open(path) as store:
        assert store.check_integrity() == []
        product = store.get_product("cat")
        images = store.list_images(product.id)
        assert len(images) % 2 == 0 and len(images) >= 4  # whole batches only
        for image in images:
            if image.source_label == "dent":
                assert store.latest_mask_revision(image.id) is not None
        assert import_directory(store, root).added == 40 - len(images)
