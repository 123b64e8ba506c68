"""A promoted version travels as a bundle: stations install it, see it, roll it back, and
refuse one made for another product or with a newer schema."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from workstation.__main__ import main
from workstation.core.errors import UserError
from workstation.services.versions import rollback
from workstation.store.repository import Store
from workstation.sync.bundle import MANIFEST
from workstation.sync.models import install_version, publish_version

PRODUCT = "ball-screw"


def _trained(store: Store, tmp_path: Path, name: str) -> str:
    """A registered adapter version with weights, config and calibration files."""
    product = store.find_product(PRODUCT) or store.create_product(PRODUCT)
    folder = tmp_path / f"round-{name}"
    (folder / "calibration").mkdir(parents=True)
    (folder / "adapter.safetensors").write_bytes(name.encode() * 100)
    (folder / "config.json").write_text(json.dumps({"backbone": "filterbank"}))
    (folder / "calibration" / "threshold.json").write_text('{"threshold": 1.0}')
    parent = store.active_model_version(product.id, "adapter")
    version = store.add_model_version(
        product.id,
        kind="adapter",
        state="active",
        name=name,
        parent_id=None if parent is None else parent.id,
        files=folder,
        metrics={"golden_image_auroc": 0.97},
        config={"backbone": "filterbank", "gate": "better on the golden set"},
    )
    return version.name


@pytest.fixture
def published(tmp_path: Path) -> Path:
    with Store.open(tmp_path / "server" / "server.sqlite") as server:
        _trained(server, tmp_path, "adapter-1")
        _trained(server, tmp_path, "adapter-2")
        return publish_version(server, "adapter-2", tmp_path / "adapter-2.zip")


def test_station_installs_sees_and_rolls_back(tmp_path: Path, published: Path) -> None:
    with Store.open(tmp_path / "station" / "s.sqlite") as station:
        own = _trained(station, tmp_path, "adapter-1")
        installed = install_version(station, published, product=PRODUCT)
        product = station.get_product(PRODUCT)
        assert installed.state == "active" and installed.name.startswith("adapter-2.")
        assert installed.metrics == {"golden_image_auroc": 0.97}
        assert installed.config["published"]["parent"] == "adapter-1"  # type: ignore[index]
        assert station.model_files(installed).joinpath("calibration", "threshold.json").is_file()
        names = [v.name for v in station.list_model_versions(product.id)]  # the Models dock
        assert names == [own, installed.name]
        assert install_version(station, published) == installed  # twice: no change
        assert len(station.list_model_versions(product.id)) == 2
        back = rollback(station, PRODUCT, "adapter")
        assert back is not None and back.name == own
        assert station.get_model_version(installed.name).state == "rolled_back"


def test_station_refuses_a_bundle_for_another_product(tmp_path: Path, published: Path) -> None:
    with Store.open(tmp_path / "station" / "s.sqlite") as station:
        station.create_product("ball-nut")
        with pytest.raises(UserError, match="made for product 'ball-screw'"):
            install_version(station, published)
        station.create_product(PRODUCT)
        with pytest.raises(UserError, match="not 'ball-nut'"):
            install_version(station, published, product="ball-nut")
        assert station.list_model_versions(station.get_product(PRODUCT).id) == []


def _with_manifest(bundle: Path, **changes: object) -> Path:
    out = bundle.with_name("changed.zip")
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == MANIFEST:
                data = json.dumps({**json.loads(data), **changes}).encode()
            target.writestr(name, data)
    return out


def test_station_refuses_a_newer_schema_and_a_damaged_bundle(
    tmp_path: Path, published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "station" / "s.sqlite"
    with Store.open(db) as station:
        station.create_product(PRODUCT)
    newer = _with_manifest(published, schema=7)
    assert main(["--db", str(db), "models", "install", str(newer)]) == 2
    assert "bundle schema 7" in capsys.readouterr().err
    damaged = _with_manifest(published, files_sha256="0" * 64)
    assert main(["--db", str(db), "models", "install", str(damaged)]) == 2
    assert "do not hash as published" in capsys.readouterr().err
    with Store.open(db) as station:
        assert station.list_model_versions(station.get_product(PRODUCT).id) == []
        assert [p.name for p in station.models_dir.iterdir()] == []
    assert main(["--db", str(db), "models", "install", str(published)]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "adapter"


def test_weights_bundle_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    from workstation.pretrained.bundles import install_bundle

    bundle = tmp_path / "dino.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr(
            MANIFEST,
            json.dumps({"format": 9, "name": "dinov2-small", "kind": "dinov2", "files": []}),
        )
    with pytest.raises(UserError, match="bundle format 9"):
        install_bundle(bundle)
