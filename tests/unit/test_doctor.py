"""The doctor: each check's verdicts, the exit-code rule, and the report a person reads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from workstation import doctor
from workstation.config import ExpertSettings, ExplainerSettings, Settings
from workstation.doctor import CheckResult, DoctorContext, environment
from workstation.doctor.models import configured_models


def context(tmp_path: Path, settings: Settings | None = None) -> DoctorContext:
    return DoctorContext(settings=settings or Settings(), db_path=tmp_path / "store.sqlite")


def test_exit_code_counts_only_required_failures() -> None:
    ok = CheckResult("python", True, "3.11")
    missing_model = CheckResult("model x", False, "missing", fix="get it", severity="optional")
    broken = CheckResult("qt", False, "no plugin", fix="install libs")
    assert doctor.exit_code([ok, missing_model]) == 0
    assert doctor.exit_code([ok, missing_model, broken]) == 1


def test_report_shows_each_problem_with_its_fix() -> None:
    report = doctor.format_report(
        [
            CheckResult("python", True, "3.11"),
            CheckResult("model dinov2-small", False, "missing", fix="models install X.zip",
                        severity="optional"),
            CheckResult("qt", False, "no plugin", fix="apt install libegl1"),
        ]
    )
    lines = report.splitlines()
    assert lines[0].startswith("[ OK ] python")
    assert "[WARN] model dinov2-small" in report and "fix: models install X.zip" in report
    assert "[FAIL] qt" in report and "fix: apt install libegl1" in report
    assert lines[-1] == "1 problem(s) to fix, 1 optional item(s) missing"


def test_a_crashing_check_becomes_one_failed_line(tmp_path: Path) -> None:
    def check_exploding(_: DoctorContext) -> CheckResult:
        raise RuntimeError("plugin table corrupt")

    (result,) = doctor.run_checks(context(tmp_path), [check_exploding])
    assert result.blocking
    assert result.name == "exploding"
    assert "RuntimeError: plugin table corrupt" in result.detail and result.fix


def test_weight_free_defaults_pass_and_missing_models_only_warn(tmp_path: Path) -> None:
    """The bar: no downloaded weights on the machine, yet exit 0, each missing model named
    with a fix. ImageNet CNNs come with pip packages (the test extra installs them)."""
    from workstation.pretrained.catalog import catalog_names, get_entry
    from workstation.pretrained.weights import packaged_file

    results = doctor.run_checks(
        context(tmp_path), [doctor.check_weight_free_pipeline, doctor.check_models]
    )
    pipeline, *models = results
    assert pipeline.ok, pipeline.detail
    assert [m.name for m in models] == [f"model {n}" for n in catalog_names()]
    for model in models:
        entry = get_entry(model.name.split()[1])
        if entry.family == "imagenet":  # listed with its package when pip installed it
            installed = packaged_file(entry)
            assert model.ok == (installed is not None), model
            assert model.detail.startswith(f"package: {installed}") if installed else (
                "pip install" in model.fix
            )
            continue
        assert not model.ok and model.severity == "optional"
        assert "models install" in model.fix and model.name.split()[1] in model.fix
    assert doctor.exit_code(results) == 0


def test_configured_models_are_marked(tmp_path: Path) -> None:
    settings = Settings(
        experts=ExpertSettings(enabled=("fewshot", "zeroshot"), backbone="dinov2-small"),
        explainer=ExplainerSettings(kind="vlm", vlm="smolvlm"),
    )
    assert configured_models(settings) == [
        ("few-shot backbone", "dinov2-small"),
        ("zero-shot CLIP", "clip-b16-plus"),
        ("explainer VLM", "smolvlm"),
    ]
    results = {r.name: r for r in doctor.check_models(context(tmp_path, settings))}
    assert "configured as few-shot backbone" in results["model dinov2-small"].detail
    assert "configured" not in results["model dinov2-base"].detail
    assert configured_models(Settings()) == []
    named = Settings(explainer=ExplainerSettings(kind="qwen2-vl-2b"))
    assert configured_models(named) == [("explainer VLM", "qwen2-vl-2b")]


def _install_fake_bundle(payload: bytes) -> Path:
    from workstation.pretrained.weights import bundles_dir

    folder = bundles_dir() / "tiny-test"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(payload)
    manifest = {
        "format": 1,
        "name": "tiny-test",
        "kind": "dinov2",
        "files": [
            {
                "path": "model.safetensors",
                "sha256": hashlib.sha256(payload).hexdigest(),
                "size": len(payload),
            }
        ],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_bundles_are_listed_with_their_hash_and_tampering_is_caught(tmp_path: Path) -> None:
    (empty,) = doctor.check_bundles(context(tmp_path))
    assert empty.ok and "none installed" in empty.detail

    folder = _install_fake_bundle(b"weights" * 100)
    digest = hashlib.sha256(b"weights" * 100).hexdigest()
    verifying = DoctorContext(Settings(), tmp_path / "s.sqlite", verify_hashes=True)
    (bundle,) = doctor.check_bundles(verifying)
    assert bundle.ok and bundle.name == "bundle tiny-test"
    assert digest[:16] in bundle.detail and "hashes verified" in bundle.detail

    (folder / "model.safetensors").write_bytes(b"tampered" * 100)
    (bundle,) = doctor.check_bundles(verifying)
    assert not bundle.ok and "DIFFER" in bundle.detail and "models install" in bundle.fix
    assert bundle.severity == "optional"

    (folder / "manifest.json").write_text("[]")  # damaged manifest: reported, not raised
    (bundle,) = doctor.check_bundles(verifying)
    assert not bundle.ok and "not a JSON object" in bundle.detail
    assert "reinstall" in bundle.detail and bundle.severity == "optional"


Usage = namedtuple("Usage", "total used free")


@pytest.mark.parametrize(
    ("free", "ok", "severity"),
    [(100 * 1024**3, True, "required"), (2 * 1024**3, False, "optional"),
     (100 * 1024**2, False, "required")],
)
def test_disk_thresholds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int, ok: bool, severity: str
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(free * 2, free, free))
    result = doctor.check_disk(context(tmp_path))
    assert (result.ok, result.severity) == (ok, severity)
    assert str(tmp_path) in result.detail


def test_cuda_preference_without_cuda_is_a_required_failure(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from workstation.config import DeviceSettings

    results = {r.name: r for r in doctor.check_torch(
        context(tmp_path, Settings(device=DeviceSettings(preference="cuda")))
    )}
    assert results["torch"].ok
    assert results["cuda"].blocking and 'preference = "auto"' in results["cuda"].fix
    auto = {r.name: r for r in doctor.check_torch(context(tmp_path))}
    assert auto["cuda"].ok


def test_broken_user_config_is_reported_not_raised() -> None:
    from workstation.paths import user_data_dir

    user_data_dir().mkdir(parents=True, exist_ok=True)
    (user_data_dir() / "config.toml").write_text("[experts]\nbackbone = \n")
    context_, findings = doctor.build_context()
    assert findings[0].blocking and "config.toml" in findings[0].fix
    assert context_.settings == Settings()


def test_a_default_config_from_another_version_says_reinstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "default_config.toml").write_text("[experts]\nno_such_key = 1\n")
    monkeypatch.setenv("IAD_WORKSTATION_RESOURCES", str(tmp_path))
    _, findings = doctor.build_context()
    assert findings[0].blocking and "no_such_key" in findings[0].detail
    assert "reinstall" in findings[0].fix


def test_missing_resources_are_a_required_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IAD_WORKSTATION_RESOURCES", str(tmp_path / "nowhere"))
    assert doctor.check_resources(context(tmp_path)).blocking


def test_qt_probe_starts_offscreen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    result = doctor.check_qt(context(tmp_path))
    assert result.ok, result.detail
    assert "'offscreen'" in result.detail


def test_qt_without_display_probes_offscreen_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.name != "posix":
        pytest.skip("display variables are an X11/Wayland matter")
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    result = doctor.check_qt(context(tmp_path))
    assert result.ok and "no display" in result.detail


def test_unloadable_qt_platform_fails_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "no-such-platform")
    result = doctor.check_qt(context(tmp_path))
    assert result.blocking
    assert "no-such-platform" in result.detail and "QT_QPA_PLATFORM" in result.fix


def test_store_is_reported_without_being_created_or_migrated(tmp_path: Path) -> None:
    from workstation.store.db import SCHEMA_VERSION
    from workstation.store.repository import Store

    ctx = context(tmp_path)
    fresh = doctor.check_store(ctx)
    assert fresh.ok and "not created yet" in fresh.detail
    assert not ctx.db_path.exists()

    Store.open(ctx.db_path).close()
    current = doctor.check_store(ctx)
    assert current.ok and f"schema v{SCHEMA_VERSION}" in current.detail


def test_store_from_a_newer_program_or_not_a_store_fails(tmp_path: Path) -> None:
    import sqlite3

    ctx = context(tmp_path)
    conn = sqlite3.connect(ctx.db_path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    newer = doctor.check_store(ctx)
    assert newer.blocking and "v999" in newer.detail and "update" in newer.fix

    ctx.db_path.write_bytes(b"this is a photo, not a database" * 200)
    garbage = doctor.check_store(ctx)
    assert garbage.blocking and "not a readable" in garbage.detail and "--db" in garbage.fix


def test_a_configured_vlm_folder_is_checked_to_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Config and model class are resolved for real; only the processor load is observed
    (building a real tokenizer takes half a minute, and is transformers' own business)."""
    import transformers
    from transformers import Qwen2VLConfig

    folder = tmp_path / "vlm"
    Qwen2VLConfig().save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"not read by the doctor")
    processor_folders: list[Path] = []
    monkeypatch.setattr(
        transformers.AutoProcessor,
        "from_pretrained",
        lambda path, **_: processor_folders.append(Path(path)),
    )
    settings = Settings(explainer=ExplainerSettings(kind="vlm", vlm=str(folder)))
    results = {r.name: r for r in doctor.check_models(context(tmp_path, settings))}
    loaded = results[f"model {folder}"]
    assert loaded.ok and "configured as explainer VLM" in loaded.detail
    assert "Qwen2VLForConditionalGeneration and its processor load" in loaded.detail
    assert processor_folders == [folder.resolve()]

    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    broken = {r.name: r for r in doctor.check_models(context(tmp_path, settings))}
    assert not broken[f"model {folder}"].ok
    assert "does not load" in broken[f"model {folder}"].detail

    (folder / "model.safetensors").unlink()
    unusable = {r.name: r for r in doctor.check_models(context(tmp_path, settings))}
    assert "no weights" in unusable[f"model {folder}"].detail
    assert unusable[f"model {folder}"].severity == "optional"


def test_model_libraries_import_or_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stand-in module names keep this fast; the real list is exercised by smoke.sh."""
    import sys

    monkeypatch.setattr(
        environment, "MODEL_LIBRARIES", (("json", "reading manifests"), ("peft_blocked", "LoRA"))
    )
    monkeypatch.setitem(sys.modules, "peft_blocked", None)  # makes the import fail
    results = {r.name: r for r in doctor.check_model_libraries(context(tmp_path))}
    assert results["json"].ok
    broken = results["peft_blocked"]
    assert not broken.ok and broken.severity == "optional"
    assert "needed for LoRA" in broken.detail and broken.fix
