"""Very large images are decided at import and at inspect: refused from the header
(over ``[limits] max_image_megapixels``) with one line, and the batch goes on."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from synthetic_parts import textured, with_defect

from workstation.__main__ import main
from workstation.core.imageio import write_png


def png_header_only(path: Path, side: int) -> Path:
    """A valid PNG header declaring ``side`` x ``side`` pixels; no pixel data follows."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + crc + end)
    return path


def test_import_refuses_a_huge_image_and_imports_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for seed in range(3):
        write_png(folder / f"part_{seed}.png", textured(seed))
    png_header_only(folder / "huge.png", 19_999)
    db = tmp_path / "s.sqlite"
    assert main(["--db", str(db), "import", str(folder), "--product", "plate"]) == 0
    captured = capsys.readouterr()
    assert "1 file(s) not imported" in captured.err
    assert "huge.png: 19999x19999 pixels is more than the limit of 100 megapixels" in captured.err
    assert "max_image_megapixels" in captured.err


def test_the_pixel_limit_is_a_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], _isolated_home: Path
) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    write_png(folder / "part.png", textured(1))  # 96 x 96 = 9216 pixels
    db = tmp_path / "s.sqlite"
    config = _isolated_home / "config.toml"
    config.write_text("[limits]\nmax_image_megapixels = 0.005\n")
    main(["--db", str(db), "import", str(folder), "--product", "plate"])
    assert "limit of 0.005 megapixels" in capsys.readouterr().err
    config.write_text("[limits]\nmax_image_megapixels = 0.01\n")
    assert main(["--db", str(db), "import", str(folder), "--product", "plate"]) == 0
    assert "not imported" not in capsys.readouterr().err


def test_an_inspect_batch_goes_on_past_a_huge_image_with_per_item_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "plate"
    (folder / "train" / "good").mkdir(parents=True)
    for seed in range(5):
        write_png(folder / "train" / "good" / f"n{seed}.png", textured(seed))
    db = str(tmp_path / "s.sqlite")
    assert main(["--db", db, "import", str(folder), "--product", "plate"]) == 0
    huge = png_header_only(tmp_path / "huge.png", 19_999)
    good = tmp_path / "defect.png"
    write_png(good, with_defect(7)[0])
    capsys.readouterr()
    assert main(["--db", db, "inspect", str(huge), str(good), "--product", "plate"]) == 1
    captured = capsys.readouterr()
    assert f"[1/2] {huge}: refused" in captured.err
    assert f"[2/2] {good}: 96x96 px, scoring" in captured.err
    assert f"{good}: " in captured.out
    assert "1 of 2 image(s) not scored" in captured.err and "megapixels" in captured.err
