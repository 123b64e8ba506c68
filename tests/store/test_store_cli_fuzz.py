"""Fuzzing the CLI's path arguments: whatever path a person types, no traceback.

Paths are built from names that exist in the working folder (a store, an image, an
empty file, a text file, a folder, a symbolic link loop), names that do not, odd
characters (NUL, spaces, accents, glob and option characters) and ``.``/``..``, always
relative to a scratch folder so that nothing outside it is read or written. Each call
goes through ``main`` in-process, as the console script does.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from store_helpers import make_mvtec
from synthetic_parts import textured

import workstation.doctor as doctor
from workstation.__main__ import main
from workstation.config import user_config_path
from workstation.core.imageio import write_png
from workstation.services.inspect import inspect_product
from workstation.store.repository import Store

NAMES = (
    "", ".", "..", "store.sqlite", "image.png", "empty.png", "notes.txt", "folder", "loop.png",
    "missing", "new.sqlite", "~nobody-iad", "é ü", " ", "a\x00b", "*", "-", "--", "-x", "\\",
)
SEGMENT = st.one_of(st.sampled_from(NAMES), st.text(max_size=8))


def _relative(parts: list[str]) -> str:
    """Joined, kept inside the scratch folder: never absolute, never ``~user``, and no
    more ``..`` than the two levels the working folder sits below it."""
    path = "/".join(parts)
    if path.startswith(("/", "~")):
        path = "./" + path
    if path.split("/").count("..") > 2:
        path = path.replace("..", "dots")
    return path


PATHS = st.lists(SEGMENT, min_size=1, max_size=3).map(_relative)
COMMANDS = st.sampled_from(
    [
        lambda p: ["--db", p, "import", "folder"],
        lambda p: ["--db", "store.sqlite", "import", p],
        lambda p: ["--db", "store.sqlite", "export", p, "--product", "bottle"],
        lambda p: ["--db", p, "export", "out", "--product", "bottle"],
        lambda p: ["--db", "store.sqlite", "inspect", p, "--product", "bottle"],
        lambda p: ["doctor", "--db", p],
        lambda p: ["repair", p, "--db", "store.sqlite"],
        lambda p: ["repair", "fresh.sqlite", "--db", p],
    ]
)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "a" / "work"
    make_mvtec(work / "folder", train=3, test_good=1, defects={"scratch": 1})
    write_png(work / "image.png", textured(3))
    (work / "empty.png").write_bytes(b"")
    (work / "notes.txt").write_text("not an image, not a store")
    (work / "loop.png").symlink_to("loop.png")
    user_config_path().parent.mkdir(parents=True, exist_ok=True)
    user_config_path().write_text("[experts]\nimage_size = 64\n")
    with Store.open(work / "store.sqlite") as store:
        from workstation.config import ExpertSettings
        from workstation.services.importing import import_directory

        import_directory(store, work / "folder", product="bottle")
        inspect_product(store, "bottle", ExpertSettings(image_size=64))
    monkeypatch.chdir(work)
    # The store checks only: the Qt probe and the model checks take seconds each.
    monkeypatch.setattr(doctor, "DEFAULT_CHECKS", (doctor.check_store, doctor.check_store_damage))
    return work


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=COMMANDS, path=PATHS)
@example(command=lambda p: ["--db", p, "import", "folder"], path="a\x00b")
@example(command=lambda p: ["--db", p, "import", "folder"], path="notes.txt/x")
@example(command=lambda p: ["--db", "store.sqlite", "export", p, "--product", "bottle"],
         path="notes.txt")
@example(command=lambda p: ["--db", "store.sqlite", "import", p], path="loop.png")
@example(command=lambda p: ["--db", "store.sqlite", "inspect", p, "--product", "bottle"],
         path="empty.png")
@example(command=lambda p: ["--db", p, "import", "folder"], path="~nobody-iad/s.sqlite")
@example(command=lambda p: ["repair", p, "--db", "store.sqlite"], path="..")
def test_no_path_argument_ends_in_a_traceback(scratch: Path, command, path: str) -> None:  # type: ignore[no-untyped-def]
    argv = command(path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse refusing an argument: usage and one line
            code = exit_.code
    text = err.getvalue()
    assert "Traceback" not in text, (argv, text)
    assert "unexpected" not in text, (argv, text)  # a bug line would hide a traceback
    assert code in (0, 1, 2), (argv, code, text)
    assert sum(line.startswith("error:") for line in text.splitlines()) <= 1, (argv, text)
