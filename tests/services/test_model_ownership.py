"""Model files belong to the store that fitted them, and a changed file is never used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from synthetic_parts import textured, with_defect

from workstation.__main__ import main
from workstation.config import ExpertSettings, user_config_path
from workstation.core.imageio import write_png
from workstation.paths import models_dir
from workstation.services.importing import import_directory
from workstation.services.inspect import inspect_product, load_active_pipeline
from workstation.store.model_files import ModelFilesError, folder_sha256
from workstation.store.repository import Store
from workstation.store.schema import MIGRATIONS

SETTINGS = ExpertSettings(image_size=96, target_false_positive_rate=0.2)


def category(root: Path, seed: int) -> Path:
    """An MVTec category of synthetic parts; ``seed`` makes each one different data."""
    for index in range(4):
        write_png(root / "train" / "good" / f"{index:03d}.png", textured(seed + index))
    image, mask = with_defect(seed + 50)
    write_png(root / "test" / "dent" / "000.png", image)
    write_png(root / "ground_truth" / "dent" / "000_mask.png", mask * 255)
    return root


def fitted_store(path: Path, data: Path) -> Store:
    store = Store.open(path)
    import_directory(store, data, product="bsd")
    inspect_product(store, "bsd", SETTINGS)
    return store


def scores(store: Store, images: list[np.ndarray]) -> list[float]:
    product = store.get_product("bsd")
    _, pipeline = load_active_pipeline(store, product, SETTINGS)
    return [r.score for r in pipeline.predict(images)]


def test_two_stores_with_the_same_product_name_never_share_a_model(tmp_path: Path) -> None:
    # Both stores in one folder: the worst case for any path derived from the product.
    first = fitted_store(tmp_path / "a.sqlite", category(tmp_path / "data-a", seed=0))
    second = fitted_store(tmp_path / "b.sqlite", category(tmp_path / "data-b", seed=500))
    probe = [textured(900), with_defect(901)[0]]
    first_version = first.active_model_version(first.get_product("bsd").id, "experts")
    assert first_version is not None and first_version.name == "experts-1"
    first_folder = first.model_files(first_version)
    first_hash, first_scores = folder_sha256(first_folder), scores(first, probe)

    # The second store fits again and again: its versions land in its own folder only.
    inspect_product(second, "bsd", SETTINGS, refit=True)
    second_version = second.active_model_version(second.get_product("bsd").id, "experts")
    assert second_version is not None and second_version.name == "experts-2"
    assert second.model_files(second_version).parent == tmp_path / "b.models"
    assert first_folder.parent == tmp_path / "a.models"
    assert folder_sha256(first_folder) == first_hash
    assert scores(first, probe) == first_scores
    assert scores(second, probe) != first_scores  # fitted on other data: another model
    assert not models_dir().exists()  # the shared home folder is not used at all
    first.close()
    second.close()


def test_a_changed_model_file_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = fitted_store(tmp_path / "s.sqlite", category(tmp_path / "data", seed=0))
    version = store.active_model_version(store.get_product("bsd").id, "experts")
    assert version is not None and version.path is not None
    calibration = Path(version.path) / "calibration.json"
    tampered = calibration.read_bytes() + b" "  # still valid JSON, but not what was fitted
    calibration.write_bytes(tampered)
    with pytest.raises(ModelFilesError, match=r"changed after it was registered.*--refit"):
        inspect_product(store, "bsd", SETTINGS)
    store.close()

    user_config_path().parent.mkdir(parents=True, exist_ok=True)
    user_config_path().write_text("[experts]\nimage_size = 96\n")
    db = str(tmp_path / "s.sqlite")
    image = tmp_path / "data" / "test" / "dent" / "000.png"
    assert main(["--db", db, "inspect", str(image), "--product", "bsd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "experts-1" in err[0] and "--refit" in err[0]
    # The fix it names works, and the tampered folder is left for the person to look at.
    assert main(["--db", db, "inspect", "--product", "bsd", "--refit"]) == 0
    assert calibration.read_bytes() == tampered


def test_a_failed_registration_gives_the_folder_back(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite")
    product = store.create_product("bsd")
    store.add_model_version(product.id, name="adapter-1", kind="adapter", state="active")
    folder = store.new_model_folder()
    (folder / "weights.bin").write_bytes(b"\x01" * 10)
    with pytest.raises(Exception, match="already exists"):
        store.add_model_version(
            product.id, name="adapter-1", kind="adapter", state="active", files=folder
        )
    assert (folder / "weights.bin").read_bytes() == b"\x01" * 10
    version = store.add_model_version(product.id, kind="adapter", state="active", files=folder)
    assert version.name == "adapter-2" and not folder.exists()
    assert store.model_files(version) == store.models_dir / "adapter-2"
    store.close()


def _v1_store(path: Path) -> sqlite_utils.Database:
    db = sqlite_utils.Database(path)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    return db


def test_migration_copies_trained_models_in_and_marks_shared_experts_stale(
    tmp_path: Path,
) -> None:
    data = category(tmp_path / "data", seed=0)
    path = tmp_path / "old.sqlite"
    shared = models_dir() / "bsd" / "experts-1"  # the old shared place, maybe overwritten
    shared.mkdir(parents=True)
    (shared / "pipeline.json").write_text("{}")
    adapter = tmp_path / "rounds" / "product-1" / "adapter-20240101T000000Z" / "model"
    adapter.mkdir(parents=True)
    (adapter / "adapter.safetensors").write_bytes(b"weights")
    db = _v1_store(path)
    now = "2024-01-01T00:00:00+00:00"
    db["products"].insert(
        {"id": 1, "name": "bsd", "description": "", "normality_rules": "[]",
         "defect_vocabulary": "[]", "created_at": now}
    )
    for version_id, name, kind, folder in (
        (1, "experts-1", "experts", shared),
        (2, "adapter-1-1", "adapter", adapter),
    ):
        db["model_versions"].insert(
            {"id": version_id, "product_id": 1, "name": name, "kind": kind, "state": "active",
             "path": str(folder), "metrics": "{}", "config": "{}", "created_at": now}
        )
    db.close()

    store = Store.open(path)
    moved = store.get_model_version("adapter-1-1")
    assert moved.path == str(tmp_path / "old.models" / "adapter-1-1")
    assert store.model_files(moved).joinpath("adapter.safetensors").read_bytes() == b"weights"
    assert (adapter / "adapter.safetensors").is_file()  # the original is left alone
    experts = store.get_model_version("experts-1")
    assert experts.files_sha256 is None
    problem = store.model_files_problem(experts)
    assert problem is not None and problem.state == "unhashed"
    with pytest.raises(ModelFilesError, match="may belong to another store"):
        store.model_files(experts)
    # An unhashed experts version is stale: the next inspection refits it in the store.
    store.set_model_state(moved.id, "retired")  # the fake adapter has no real weights
    import_directory(store, data, product="bsd")
    report = inspect_product(store, "bsd", SETTINGS)
    assert report.model_version == "experts-2"
    refitted = store.get_model_version("experts-2")
    assert store.model_files(refitted).parent == tmp_path / "old.models"
    store.close()


@pytest.mark.parametrize("kind", ["adapter", "selftaught"])
def test_a_changed_trained_model_is_refused_before_it_joins_the_experts(
    tmp_path: Path, kind: str
) -> None:
    from workstation.services.onboard import trained_model_paths

    store = Store.open(tmp_path / "s.sqlite")
    product = store.create_product("bsd")
    folder = store.new_model_folder()
    (folder / "weights.bin").write_bytes(b"trained")
    version = store.add_model_version(product.id, kind=kind, state="active", files=folder)
    assert trained_model_paths(store, product)[kind] == version.path
    (Path(version.path or "") / "weights.bin").write_bytes(b"swapped")
    with pytest.raises(ModelFilesError, match=f"rollback --product bsd --kind {kind}"):
        trained_model_paths(store, product)
    store.close()
