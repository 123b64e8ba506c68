"""Real processes: an import killed with SIGKILL half-way, and two imports at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sync_helpers import PRODUCT, add_images, current_state, give_feedback, revision_keys

from workstation.store.repository import Store
from workstation.sync.feedback import export_feedback, import_feedback

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

# The child imports the bundle and, after some revisions are inserted (inside the one
# transaction), says so and waits to be killed: a kill that lands half-way for sure.
_KILLED_CHILD = """
import sys, time
from pathlib import Path
import workstation.store.exchange as exchange
from workstation.store.repository import Store
from workstation.sync.feedback import import_feedback

insert, count = exchange._insert, [0]
def slow_insert(*args, **kwargs):
    insert(*args, **kwargs)
    count[0] += 1
    if count[0] == 10:
        Path(sys.argv[3]).write_text("half-way")
        time.sleep(600)
exchange._insert = slow_insert
import_feedback(Store.open(Path(sys.argv[1])), Path(sys.argv[2]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _station_bundle(tmp_path: Path, name: str, seeds: list[int], verdict: str) -> Path:
    with Store.open(tmp_path / name / "s.sqlite") as source:
        ids = add_images(source, tmp_path / f"images-{name}", seeds)
        give_feedback(source, ids, verdict=verdict, seed=seeds[0])
        return export_feedback(source, PRODUCT, tmp_path / f"{name}.zip").path


def _cli(db: Path, bundle: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workstation", "--db", str(db), "sync", "import", str(bundle)],
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _clean(tmp_path: Path, bundles: list[Path]) -> Store:
    store = Store.open(tmp_path / "clean" / "c.sqlite")
    for bundle in bundles:
        import_feedback(store, bundle)
    return store


def test_kill_9_half_way_then_rerun_equals_one_clean_import(tmp_path: Path) -> None:
    bundle = _station_bundle(tmp_path, "a", [1, 2, 3, 4, 5, 6], "anomalous")
    target = tmp_path / "target" / "t.sqlite"
    flag = tmp_path / "half-way"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(target), str(bundle), str(flag)],
        env=_env(),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert child.poll() is None, "the import ended before it was killed"
        assert time.monotonic() < deadline, "the import never got half-way"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL

    with Store.open(target) as killed:
        assert killed.list_products() == []  # the transaction never committed
    rerun = _cli(target, bundle)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    with Store.open(target) as store, _clean(tmp_path, [bundle]) as clean:
        assert current_state(store) == current_state(clean)
        assert revision_keys(store) == revision_keys(clean)
        assert store.check_integrity() == []


def test_two_imports_at_once_into_one_store(tmp_path: Path) -> None:
    a = _station_bundle(tmp_path, "a", [1, 2, 3, 4], "normal")
    b = _station_bundle(tmp_path, "b", [3, 4, 5, 6], "anomalous")
    target = tmp_path / "target" / "t.sqlite"
    Store.open(target).close()  # created and migrated: both children start equal
    children = [_cli(target, a), _cli(target, b), _cli(target, a)]
    for child in children:
        _, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
    with Store.open(target) as store, _clean(tmp_path, [a, b]) as clean:
        assert current_state(store) == current_state(clean)
        assert revision_keys(store) == revision_keys(clean)
        assert store.count_images(store.get_product(PRODUCT).id, conflict=True) == 2
        assert store.check_integrity() == []
