"""Weights resolution and offline bundles: round trip, refusals, cache lookup, CLI messages."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from workstation import __version__
from workstation.__main__ import main
from workstation.core.errors import MissingModelError, UserError
from workstation.pretrained.bundles import create_bundle, install_bundle, installed_bundles
from workstation.pretrained.catalog import CATALOG, get_entry
from workstation.pretrained.weights import bundles_dir, model_status, resolve


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DINOv2-shaped folder; its bytes are stand-ins (loading is tested with real tiny
    models in test_backbones), which keeps these tests free of torch start-up cost."""
    folder = tmp_path_factory.mktemp("models") / "tiny-dino"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "dinov2", "patch_size": 8}))
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    return folder


@pytest.fixture(autouse=True)
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private Hugging Face cache (a real one on the machine must not leak in)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def fake_cached_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Lay files out the way huggingface_hub stores a downloaded snapshot."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def rewrite_zip(source: Path, target: Path, *, change: dict[str, bytes | None]) -> Path:
    """Copy a bundle zip, replacing (bytes) or dropping (None) members; others kept as is."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            if item.filename in change:
                continue
            dst.writestr(item, src.read(item.filename))
        for name, data in change.items():
            if data is not None:
                dst.writestr(name, data)
    return target


def read_manifest(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as archive:
        return json.loads(archive.read("manifest.json"))


def test_bundle_install_round_trip(dino_dir: Path, tmp_path: Path) -> None:
    out = create_bundle("tiny-dino", tmp_path / "tiny.zip", folder=dino_dir)
    manifest = read_manifest(out)
    assert manifest["name"] == "tiny-dino" and manifest["kind"] == "dinov2"
    assert manifest["app_version"] == __version__ and manifest["created"]
    assert manifest["source"]["origin"] == "folder"
    for item in manifest["files"]:
        data = (dino_dir / item["path"]).read_bytes()
        assert item["sha256"] == hashlib.sha256(data).hexdigest() and item["size"] == len(data)

    installed = install_bundle(out)
    assert installed.path == bundles_dir() / "tiny-dino"
    for item in manifest["files"]:
        copied = (installed.path / item["path"]).read_bytes()
        assert copied == (dino_dir / item["path"]).read_bytes()
    resolved = resolve("tiny-dino")
    assert (resolved.origin, resolved.family, resolved.path) == ("bundle", "dinov2", installed.path)
    [listed] = installed_bundles()
    assert listed.name == "tiny-dino" and listed.hashes_ok is True

    # installing again replaces atomically and leaves no staging folders behind
    install_bundle(out)
    assert sorted(p.name for p in bundles_dir().iterdir()) == ["tiny-dino"]


def test_damaged_install_is_reported_by_list(dino_dir: Path, tmp_path: Path) -> None:
    installed = install_bundle(create_bundle("tiny-dino", tmp_path / "t.zip", folder=dino_dir))
    (installed.path / "config.json").write_text("{}")
    [listed] = installed_bundles()
    assert listed.hashes_ok is False
    assert installed_bundles(verify=False)[0].hashes_ok is None


def test_damaged_manifest_is_listed_without_hiding_other_bundles(
    dino_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_bundle(create_bundle("tiny-dino", tmp_path / "t.zip", folder=dino_dir))
    broken = bundles_dir() / "broken-model"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    listed = {b.name: b for b in installed_bundles()}
    assert listed["tiny-dino"].hashes_ok is True and not listed["tiny-dino"].problem
    assert listed["broken-model"].hashes_ok is False and listed["broken-model"].family is None
    assert "cannot read" in listed["broken-model"].problem
    assert "reinstall" in listed["broken-model"].problem
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert "tiny-dino" in table and "broken-model" in table and "DAMAGED" in table


def test_bundle_can_be_rebundled_from_an_install(dino_dir: Path, tmp_path: Path) -> None:
    install_bundle(create_bundle("tiny-dino", tmp_path / "a.zip", folder=dino_dir))
    again = create_bundle("tiny-dino", tmp_path / "b.zip")
    paths = {f["path"] for f in read_manifest(again)["files"]}
    assert paths == {"config.json", "model.safetensors"}


def assert_refused(zip_path: Path, words: str) -> None:
    with pytest.raises(UserError, match=words):
        install_bundle(zip_path)
    leftovers = list(bundles_dir().iterdir()) if bundles_dir().exists() else []
    assert leftovers == []  # nothing installed, no half-extracted folder


def test_sha_mismatch_is_refused(dino_dir: Path, tmp_path: Path) -> None:
    good = create_bundle("tiny-dino", tmp_path / "good.zip", folder=dino_dir)
    bad = rewrite_zip(good, tmp_path / "bad.zip", change={"config.json": b'{"model_type": "x"}'})
    assert_refused(bad, "sha256")


def test_truncated_zip_is_refused(dino_dir: Path, tmp_path: Path) -> None:
    good = create_bundle("tiny-dino", tmp_path / "good.zip", folder=dino_dir)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    assert_refused(truncated, "truncated or corrupt")


def test_zip_not_matching_its_manifest_is_refused(dino_dir: Path, tmp_path: Path) -> None:
    good = create_bundle("tiny-dino", tmp_path / "good.zip", folder=dino_dir)
    extra = rewrite_zip(good, tmp_path / "extra.zip", change={"evil.py": b"print()"})
    assert_refused(extra, "not in the manifest: evil.py")
    missing = rewrite_zip(good, tmp_path / "missing.zip", change={"config.json": None})
    assert_refused(missing, "missing config.json")
    no_manifest = rewrite_zip(good, tmp_path / "plain.zip", change={"manifest.json": None})
    assert_refused(no_manifest, "not a model bundle")


def test_unsafe_paths_and_kind_mismatch_are_refused(dino_dir: Path, tmp_path: Path) -> None:
    good = create_bundle("tiny-dino", tmp_path / "good.zip", folder=dino_dir)
    manifest = read_manifest(good)
    manifest["files"][0]["path"] = "../escape.json"
    unsafe = rewrite_zip(good, tmp_path / "unsafe.zip",
                         change={"manifest.json": json.dumps(manifest).encode()})
    assert_refused(unsafe, "unsafe path")
    manifest = read_manifest(good) | {"name": "clip-b16-plus"}
    mismatched = rewrite_zip(good, tmp_path / "kind.zip",
                             change={"manifest.json": json.dumps(manifest).encode()})
    assert_refused(mismatched, "is a open_clip model|is a dinov2 model")


def test_folder_resolution_and_its_errors(dino_dir: Path, tmp_path: Path) -> None:
    resolved = resolve(str(dino_dir))
    assert (resolved.origin, resolved.family, resolved.name) == ("folder", "dinov2", "tiny-dino")
    assert resolve("anything", folder=dino_dir).path == dino_dir.resolve()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="not a model folder"):
        resolve(str(empty))
    (empty / "config.json").write_text('{"model_type": "dinov2"}')
    with pytest.raises(UserError, match="no weights"):
        resolve(str(empty))
    vlm = _vlm_folder(tmp_path)
    with pytest.raises(UserError, match="holds a vlm model"):
        resolve("dinov2-small", folder=vlm)


def _vlm_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "vlm"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_vl"}')
    (folder / "model.safetensors").write_bytes(b"x")
    return folder


def test_hf_cache_is_found_offline_and_can_be_bundled(
    dino_dir: Path, hf_cache: Path, tmp_path: Path
) -> None:
    assert model_status("dinov2-small") == "missing"
    files = {p.name: p.read_bytes() for p in dino_dir.iterdir()}
    snapshot = fake_cached_repo(hf_cache, "facebook/dinov2-small", files)
    assert model_status("dinov2-small") == "in cache"
    resolved = resolve("dinov2-small")
    assert (resolved.origin, resolved.path) == ("cache", snapshot)
    out = create_bundle("dinov2-small", tmp_path / "d.zip")
    assert read_manifest(out)["source"]["repo_id"] == "facebook/dinov2-small"


def test_open_clip_checkpoint_in_cache_bundles_with_its_config(
    hf_cache: Path, tmp_path: Path
) -> None:
    entry = get_entry("clip-b16-plus")
    fake_cached_repo(hf_cache, entry.repo_id, {"open_clip_model.safetensors": b"weights"})
    resolved = resolve("clip-b16-plus")
    assert resolved.origin == "cache" and resolved.path.name == "open_clip_model.safetensors"
    out = create_bundle("clip-b16-plus", tmp_path / "c.zip")
    with zipfile.ZipFile(out) as archive:
        config = json.loads(archive.read("open_clip_config.json"))
    assert config["model_cfg"]["vision_cfg"]["width"] == 896
    assert read_manifest(out)["source"]["architecture"] == "ViT-B-16-plus-240"


def test_open_clip_entries_match_open_clips_registry() -> None:
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    for entry in CATALOG.values():
        if entry.family != "open_clip":
            continue
        config = open_clip.get_model_config(entry.architecture)
        assert config["vision_cfg"]["image_size"] == entry.image_size
        assert config["vision_cfg"]["patch_size"] == entry.patch_size
        tag = get_pretrained_cfg(entry.architecture, entry.pretrained_tag)
        assert tag["hf_hub"].rstrip("/") == entry.repo_id
        assert tag.get("quick_gelu", False) == entry.quick_gelu


def test_missing_model_is_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(MissingModelError):
        resolve("qwen2.5-vl-3b")
    code = main(["models", "bundle", "dinov2-small", str(tmp_path / "x.zip")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("error: model 'dinov2-small'")
    assert "iad-workstation models download dinov2-small" in err
    assert "iad-workstation models bundle dinov2-small OUT.zip" in err
    assert "iad-workstation models install OUT.zip" in err
    assert not (tmp_path / "x.zip").exists()


def test_download_offline_fails_with_a_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["models", "download", "dinov2-small"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: could not download 'dinov2-small'")
    assert "models bundle dinov2-small" in err[-1]


def test_cli_bundle_install_list(dino_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.zip"
    assert main(["models", "bundle", "tiny-dino", str(out), "--from", str(dino_dir)]) == 0
    assert main(["models", "install", str(out)]) == 0
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [(i["name"], i["hashes_ok"]) for i in listing["installed"]] == [("tiny-dino", True)]
    statuses = {m["name"]: m["status"] for m in listing["catalog"]}
    assert statuses["qwen2.5-vl-3b"] == "missing" and set(CATALOG) == set(statuses)
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert "tiny-dino" in table and "hashes ok" in table
    assert main(["models", "install", str(tmp_path / "nope.zip")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unknown_catalogue_name_lists_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "download", "gpt-17"]) == 2
    assert "the catalogue has: clip-b16-plus" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "out", "words"),
    [("bad name!", "x.zip", "letters, digits"), ("tiny-dino", "x.tar", "must end in .zip")],
)
def test_bad_bundle_arguments_are_refused(
    dino_dir: Path, tmp_path: Path, name: str, out: str, words: str
) -> None:
    with pytest.raises(UserError, match=words):
        create_bundle(name, tmp_path / out, folder=dino_dir)
    assert not (tmp_path / out).exists()
