"""Shared fixtures. Every test gets its own user data directory, so nothing touches $HOME."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from workstation.store.repository import Store

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("iad-home")
    monkeypatch.setenv("IAD_WORKSTATION_HOME", str(home))
    return home


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], str]]:
    """Make a file or folder read-only for this test; returns how it was done.

    Tests run as root, which ignores permission bits, so a real read-only file needs the
    immutable attribute (``chattr +i``, which root must obey). Where that is not possible
    (no chattr, a file system without attributes), the fault is simulated one layer
    below the code under test: SQLite opens such a store with ``mode=ro`` (its own
    "attempt to write a readonly database" / "unable to open database file"), and
    ``os.mkdir`` / ``open`` for writing under such a folder raise EACCES.
    """
    immutable: list[Path] = []
    simulated: list[Path] = []

    def refused(path: Path) -> bool:
        try:
            if path.is_dir():
                probe = path / ".write-probe"
                probe.write_bytes(b"")
                probe.unlink()
            else:
                with open(path, "r+b"):
                    pass
        except PermissionError:
            return True
        return False

    def make(path: Path) -> str:
        if os.geteuid() != 0:
            path.chmod(0o555 if path.is_dir() else 0o444)
            if refused(path):
                return "chmod"
        if shutil.which("chattr"):
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if done.returncode == 0:
                immutable.append(path)
                if refused(path):
                    return "chattr"
        simulated.append(path)
        return "simulated"

    def is_simulated(target: object) -> bool:
        text = os.fspath(target) if isinstance(target, str | os.PathLike) else ""
        return any(text == str(p) or text.startswith(f"{p}{os.sep}") for p in simulated)

    import builtins

    import workstation.store.db as store_db

    real_connect, real_mkdir, real_open = store_db.sqlite3.connect, os.mkdir, builtins.open

    def connect(database: object, *args: object, **kwargs: object) -> object:
        if is_simulated(database):
            database = f"{Path(os.fspath(database)).absolute().as_uri()}?mode=ro"  # type: ignore[arg-type]
            kwargs["uri"] = True
        return real_connect(database, *args, **kwargs)  # type: ignore[arg-type]

    def mkdir(target: object, *args: object, **kwargs: object) -> None:
        if is_simulated(target):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(target))  # type: ignore[arg-type]
        real_mkdir(target, *args, **kwargs)  # type: ignore[arg-type]

    def open_(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if is_simulated(file) and any(flag in mode for flag in "wax+"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))  # type: ignore[arg-type]
        return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(store_db.sqlite3, "connect", connect)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)
    yield make
    for path in immutable:
        subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store (tests that need another kind define their own ``store``)."""
    with Store.open(tmp_path / "store" / "test.sqlite") as opened:
        yield opened
