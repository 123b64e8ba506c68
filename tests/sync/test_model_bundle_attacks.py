"""Hostile model bundles (``models install``, both kinds): refused with one line, exit
2, nothing written outside the store or the bundles folder (issue 20)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attack_kit import Watch, read_bundle, refused, write_bundle

from workstation.__main__ import main
from workstation.store.repository import Store
from workstation.sync.models import publish_version

PRODUCT = "ball-screw"
WEIGHTS = "files/adapter.safetensors"


@pytest.fixture
def place(tmp_path: Path, _isolated_home: Path) -> dict[str, Path]:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "victim.txt").write_text("precious")
    with Store.open(tmp_path / "server" / "server.sqlite") as server:
        product = server.create_product(PRODUCT)
        folder = tmp_path / "round"
        folder.mkdir()
        (folder / "adapter.safetensors").write_bytes(b"weights" * 100)
        (folder / "config.json").write_text(json.dumps({"backbone": "filterbank"}))
        server.add_model_version(
            product.id, kind="adapter", state="active", name="adapter-1", files=folder
        )
        bundle = publish_version(server, "adapter-1", tmp_path / "adapter-1.zip")
    db = tmp_path / "station" / "s.sqlite"
    with Store.open(db) as station:
        station.create_product(PRODUCT)
    return {"db": db, "sentinel": sentinel, "bundle": bundle, "root": tmp_path}


Attack = Callable[[dict[str, Any], dict[str, bytes], Path], dict[str, int] | None]


def _member(name: Callable[[Path], str]) -> Attack:
    def attack(manifest: dict[str, Any], members: dict[str, bytes], sentinel: Path) -> None:
        members[name(sentinel)] = b"import os  # runs at the next Python start\n"

    return attack


def _field(key: str, value: Any) -> Attack:
    def attack(manifest: dict[str, Any], members: dict[str, bytes], sentinel: Path) -> None:
        manifest[key] = value

    return attack


def _bigger_than_declared(
    manifest: dict[str, Any], members: dict[str, bytes], sentinel: Path
) -> dict[str, int]:
    members[WEIGHTS] = b"\x01" * (3 << 20)
    return {WEIGHTS: 10}


ATTACKS: dict[str, tuple[Attack, str]] = {
    "files//ABS/PATH": (_member(lambda s: f"files/{s}/evil.pth"), "unsafe path"),
    "files/../..": (_member(lambda s: "files/../../sentinel/evil.pth"), "unsafe path"),
    "version with newline": (_field("version", "adapter-1\n"), "manifest.version"),
    "10000-char version": (_field("version", "v" * 10_000), "manifest.version"),
    "dotdot station": (_field("station", "../../x"), "manifest.station"),
    "number as kind": (_field("kind", 5), "manifest.kind"),
    "2**70 as files hash": (_field("files_sha256", 2**70), "files_sha256"),
    "text as metrics": (_field("metrics", "high"), "metrics"),
    "absolute product": (_field("product", "/etc/product"), "manifest.product"),
    "weights bigger than declared": (_bigger_than_declared, "holds more than 10 bytes"),
}


@pytest.mark.parametrize("case", list(ATTACKS))
def test_a_hostile_model_version_bundle_is_refused(
    place: dict[str, Path], case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    attack, words = ATTACKS[case]
    manifest, members = read_bundle(place["bundle"])
    sizes = attack(manifest, members, place["sentinel"])
    crafted = write_bundle(place["root"] / "crafted.zip", manifest, members, sizes=sizes)
    watch = Watch(place["root"], place["db"], [place["db"].parent])
    err = refused(watch, ["--db", str(place["db"]), "models", "install", str(crafted)], capsys)
    assert words in err
    assert not list(place["sentinel"].rglob("evil.pth"))


def test_a_model_bundle_bomb_is_refused(
    place: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, members = read_bundle(place["bundle"])
    members[WEIGHTS] = bytes(8 << 20)
    crafted = write_bundle(place["root"] / "bomb.zip", manifest, members, compress={WEIGHTS})
    assert crafted.stat().st_size < 100_000
    watch = Watch(place["root"], place["db"], [place["db"].parent])
    err = refused(watch, ["--db", str(place["db"]), "models", "install", str(crafted)], capsys)
    assert "zip bomb" in err


# ------------------------------------------------------------------ offline weight bundles
def _weight_bundle(
    root: Path, files: dict[str, bytes], *, sizes: dict[str, int] | None = None, **extra: Any
) -> Path:
    manifest = {"format": 1, "name": "my-dinov2", "kind": "dinov2", **extra}
    return write_bundle(root / "weights.zip", manifest, files, listed_key="files", sizes=sizes)


CONFIG = {"config.json": json.dumps({"model_type": "dinov2"}).encode()}


@pytest.mark.parametrize(
    ("files", "sizes", "extra", "words"),
    [
        ({"//ABS/evil.pth": b"x", **CONFIG}, None, {}, "unsafe path"),
        ({"sub//evil.pth": b"x", **CONFIG}, None, {}, "unsafe path"),
        (
            {"model.safetensors": b"\x01" * (3 << 20), **CONFIG},
            {"model.safetensors": 5},
            {},
            "holds more than 5 bytes",
        ),
        (CONFIG, None, {"name": "my-dinov2\n"}, "invalid model"),
        (CONFIG, None, {"name": "m" * 10_000}, "invalid model"),
    ],
)
def test_a_hostile_weight_bundle_is_refused(
    tmp_path: Path,
    _isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, bytes],
    sizes: dict[str, int] | None,
    extra: dict[str, Any],
    words: str,
) -> None:
    crafted = _weight_bundle(tmp_path, files, sizes=sizes, **extra)
    watch = Watch(tmp_path, None, [])
    home = Watch(_isolated_home, None, [_isolated_home / "models"])
    before = home.state()
    refused(watch, ["models", "install", str(crafted)], capsys, words=words)
    assert home.state() == before
    models = _isolated_home / "models"
    assert [p for p in models.rglob("*") if not p.is_dir()] == []  # not even a staging file
    assert main(["models", "list", "--json"]) == 0
    assert "my-dinov2" not in capsys.readouterr().out
