"""Hostile feedback bundles (``sync import``): every one refused with one line, exit 2,
before anything is written, and nothing outside the store changes (issue 20)."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attack_kit import Watch, jsonl, read_bundle, refused, rows, write_bundle
from sync_helpers import PRODUCT, add_images, give_feedback

from workstation.__main__ import main
from workstation.store.repository import Store
from workstation.sync.feedback import export_feedback

Members = dict[str, bytes]
Attack = Callable[[dict[str, Any], Members, Path], None]


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    """A station with its own work, a sentinel folder an attacker aims at, a bundle."""
    sentinel = tmp_path / "sentinel"
    (sentinel / "site-packages").mkdir(parents=True)
    (sentinel / "victim.txt").write_text("precious")
    (sentinel / "site-packages" / "ok.pth").write_text("# nothing")
    db = tmp_path / "station" / "s.sqlite"
    with Store.open(db) as store:
        (own,) = add_images(store, tmp_path / "own", [9])
        store.add_review(own, "normal", reviewer="own")
    with Store.open(tmp_path / "source" / "s.sqlite") as source:
        ids = add_images(source, tmp_path / "images", [1, 2])
        give_feedback(source, ids, verdict="anomalous", seed=4)
        bundle = export_feedback(source, PRODUCT, tmp_path / "feedback.zip").path
    return {"db": db, "sentinel": sentinel, "bundle": bundle, "root": tmp_path}


def _table(members: Members, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    table = rows(members[name])
    change(table[0])
    members[name] = jsonl(table)


def _image(field: str, value: Any) -> Attack:
    def attack(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
        _table(members, "images.jsonl", lambda row: row.__setitem__(field, value))

    return attack


def _revision(field: str, value: Any, kind: str = "mask") -> Attack:
    def attack(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
        table = rows(members["revisions.jsonl"])
        next(r for r in table if r["kind"] == kind)[field] = value
        members["revisions.jsonl"] = jsonl(table)

    return attack


def _absolute_sha(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
    aimed = (str(sentinel) + "//").ljust(64, "/")[:64]
    _table(members, "images.jsonl", lambda row: row.__setitem__("sha256", aimed))


def _product(name: Any) -> Attack:
    def attack(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
        manifest["product"] = name
        profile = json.loads(members["product.json"])
        members["product.json"] = json.dumps({**profile, "name": name}).encode()

    return attack


def _absolute_product(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
    _product(str(sentinel / "product"))(manifest, members, sentinel)


def _mask_header(height: int, width: int) -> Attack:
    """Replace a mask array by a 2 KB file whose header declares ``height x width``."""

    def attack(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
        name = next(n for n in members if n.startswith("masks/"))
        body = zlib.compress(b"\xff" * 2048, 9)
        members[name] = struct.pack("<8sII", b"IADMASK1", height, width) + body

    return attack


def _png_header(side: int) -> bytes:
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    ihdr = (
        struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    )
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + end


def _huge_png(declared: int) -> Attack:
    """An image file whose PNG header says 19999 x 19999 (declared so, or small)."""

    def attack(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
        name = next(n for n in members if n.startswith("images/"))
        members[name] = _png_header(19_999)
        if declared:
            _table(members, "images.jsonl", lambda row: row.update(width=declared, height=declared))

    return attack


def _dims(side: int) -> Attack:
    def attack(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
        _table(members, "images.jsonl", lambda row: row.update(width=side, height=side))

    return attack


def _deep_json(manifest: dict[str, Any], members: Members, sentinel: Path) -> None:
    members["product.json"] = b"[" * 100_000 + b"]" * 100_000


ATTACKS: dict[str, tuple[Attack, str]] = {
    "absolute sha256": (_absolute_sha, "sha256"),
    "dotdot sha256": (_image("sha256", "../../" + "a" * 58), "sha256"),
    "padded sha256": (_image("sha256", " " + "a" * 63), "sha256"),
    "uppercase sha256": (_image("sha256", "A" * 64), "sha256"),
    "sha256 with newline": (_image("sha256", "a" * 63 + "\n"), "sha256"),
    "dotdot source_label": (_image("source_label", "../../../escape"), "source_label"),
    "absolute source_label": (_image("source_label", "/tmp/escape"), "source_label"),
    "dotdot defect_type": (_revision("defect_type", "../../x", "explanation"), "defect_type"),
    "absolute product": (_absolute_product, "product"),
    "dotdot product": (_product("../../../escape"), "product"),
    "trailing newline product": (_product(PRODUCT + "\n"), "product"),
    "10000-char product": (_product("p" * 10_000), "product"),
    "10000-char image name": (_image("name", "n" * 10_000 + ".png"), "name"),
    "number as image name": (_image("name", 5), "must be text"),
    "number as author": (_revision("author", 7), "must be text"),
    "list as width": (_image("width", [24]), "whole number"),
    "bool as height": (_image("height", True), "whole number"),
    "2**70 revision id": (_revision("id", 2**70), "outside"),
    "2**70 image width": (_image("width", 2**70), "outside"),
    "2**70 parent id": (_revision("parent", ["a" * 8, 2**70]), "outside"),
    "declared 50000x50000 image": (_dims(50_000), "image limit"),
    "50000x50000 mask header": (_mask_header(50_000, 50_000), "50000x50000"),
    "huge png header, declared small": (_huge_png(0), "megapixels"),
    "huge png header, declared huge": (_huge_png(19_999), "image limit"),
    "deeply nested json": (_deep_json, "product.json"),
    "unknown split": (_image("split", "train\n"), "split"),
}


@pytest.mark.parametrize("case", list(ATTACKS))
def test_a_hostile_bundle_is_refused_whole(
    place: dict[str, Path], case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    attack, words = ATTACKS[case]
    manifest, members = read_bundle(place["bundle"])
    attack(manifest, members, place["sentinel"])
    crafted = write_bundle(place["root"] / "crafted.zip", manifest, members)
    watch = Watch(place["root"], place["db"], [place["db"].parent])
    err = refused(watch, ["--db", str(place["db"]), "sync", "import", str(crafted)], capsys)
    assert words in err


def _rewritten(place: dict[str, Path], members: Members, *, compress: set[str]) -> Path:
    manifest, _ = read_bundle(place["bundle"])
    return write_bundle(place["root"] / "crafted.zip", manifest, members, compress=compress)


def test_a_zip_bomb_is_refused_from_its_directory(
    place: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """8 MB of one byte deflates 1000-fold: refused before a byte is inflated."""
    _, members = read_bundle(place["bundle"])
    members["revisions.jsonl"] += b" " * (8 << 20)
    crafted = _rewritten(place, members, compress={"revisions.jsonl"})
    assert crafted.stat().st_size < 100_000
    watch = Watch(place["root"], place["db"], [place["db"].parent])
    err = refused(watch, ["--db", str(place["db"]), "sync", "import", str(crafted)], capsys)
    assert "zip bomb" in err


def test_many_small_bombs_are_refused_together(
    place: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Members of 1 MiB each stay under the per-member check; the bundle as a whole not."""
    _, members = read_bundle(place["bundle"])
    bombs = {f"images/{n:064x}.png": bytes(1 << 20) for n in range(40)}
    crafted = _rewritten(place, {**members, **bombs}, compress=set(bombs))
    assert crafted.stat().st_size < 200_000
    watch = Watch(place["root"], place["db"], [place["db"].parent])
    err = refused(watch, ["--db", str(place["db"]), "sync", "import", str(crafted)], capsys)
    assert "fold together" in err


def test_limits_come_from_the_settings(
    place: dict[str, Path], capsys: pytest.CaptureFixture[str], _isolated_home: Path
) -> None:
    """A 3 MB table under a 2 MB member limit set in config.toml; raised, it imports."""
    _, members = read_bundle(place["bundle"])
    members["revisions.jsonl"] = members["revisions.jsonl"][:-1] + b" " * (3 << 20) + b"\n"
    crafted = _rewritten(place, members, compress=set())
    config = _isolated_home / "config.toml"
    config.write_text("[limits]\nmax_bundle_member_mb = 2\n")
    watch = Watch(place["root"], place["db"], [place["db"].parent])
    err = refused(watch, ["--db", str(place["db"]), "sync", "import", str(crafted)], capsys)
    assert "revisions.jsonl" in err and "at most 2097152" in err
    config.write_text("[limits]\nmax_bundle_member_mb = 8\n")
    assert main(["--db", str(place["db"]), "sync", "import", str(crafted)]) == 0


def test_corrupt_deflate_data_is_malformed_not_a_bug(
    place: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, members = read_bundle(place["bundle"])
    crafted = _rewritten(place, members, compress={"revisions.jsonl"})
    with zipfile.ZipFile(crafted) as archive:
        info = archive.getinfo("revisions.jsonl")
    data = bytearray(crafted.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(start + 2, start + min(info.compress_size, 40)):
        data[offset] ^= 0x5A
    crafted.write_bytes(bytes(data))
    watch = Watch(place["root"], place["db"], [place["db"].parent])
    err = refused(watch, ["--db", str(place["db"]), "sync", "import", str(crafted)], capsys)
    assert "revisions.jsonl" in err


@pytest.mark.parametrize(
    "member", ["images/../../sentinel/victim.txt", "/abs/member", "images//abs", "a\\b"]
)
def test_unsafe_member_names_are_refused(
    place: dict[str, Path], member: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, members = read_bundle(place["bundle"])
    members[member] = b"written?"
    crafted = _rewritten(place, members, compress=set())
    watch = Watch(place["root"], place["db"], [place["db"].parent])
    err = refused(watch, ["--db", str(place["db"]), "sync", "import", str(crafted)], capsys)
    assert "unsafe path" in err


def test_export_follows_no_link_planted_at_a_temp_name(
    place: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The old temp name ``OUT.zip.partial`` as a link to a file: never written."""
    out = place["root"] / "out"
    out.mkdir()
    (out / "feedback.zip.partial").symlink_to(place["sentinel"] / "victim.txt")
    before = (place["sentinel"] / "victim.txt").read_bytes()
    db = place["root"] / "source" / "s.sqlite"
    code = main(
        ["--db", str(db), "sync", "export", str(out / "feedback.zip"), "--product", PRODUCT]
    )
    assert code == 0
    assert (place["sentinel"] / "victim.txt").read_bytes() == before
    assert (out / "feedback.zip.partial").is_symlink()  # not ours: left alone
    assert zipfile.ZipFile(out / "feedback.zip").testzip() is None
    assert [p.name for p in out.iterdir() if p.name.startswith(".tmp-")] == []


def test_temp_files_of_a_killed_import_are_reported_and_cleaned(
    place: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = place["db"].parent / "s.images" / "0123456789abcdef"
    folder.mkdir(parents=True)
    left = [folder / f".tmp-999999999-{n}.png" for n in range(3)]
    for path in left:
        path.write_bytes(b"half an image")
    main(["--db", str(place["db"]), "doctor"])
    report = capsys.readouterr().out
    assert "3 temp file(s) left behind" in report
    assert "reinstall" not in report.lower()
    assert main(["--db", str(place["db"]), "sync", "import", str(place["bundle"])]) == 0
    assert not any(path.exists() for path in left)


def test_plant_file_names_and_labels_still_import(
    place: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The strict checks refuse paths, not ordinary names: colons, spaces, unicode."""
    manifest, members = read_bundle(place["bundle"])
    table = rows(members["images.jsonl"])
    table[0].update(name="2026-12-03T10:00:00 Kamera 2.png", source_label="Riss (längs)")
    members["images.jsonl"] = jsonl(table)
    crafted = write_bundle(place["root"] / "crafted.zip", manifest, members)
    assert main(["--db", str(place["db"]), "sync", "import", str(crafted)]) == 0, (
        capsys.readouterr().err
    )
    with Store.open(place["db"]) as store:
        labels = {i.source_label for i in store.list_images(store.get_product(PRODUCT).id)}
    assert "Riss (längs)" in labels
