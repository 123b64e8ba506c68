"""A tiny-VLM LoRA round end to end on the CPU (a few steps), and the adapter loads back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import run
from training.contract import RoundManifest, Sample
from workstation.core.imageio import write_png


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_vlm import tiny_vlm_folder

    return tiny_vlm_folder(tmp_path_factory.mktemp("vlm"))


def _samples(root: Path) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(4):
        path = root / f"{i}.png"
        write_png(path, rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
        verdict = "anomalous" if i % 2 else "normal"
        mask_path = None
        if verdict == "anomalous":
            mask = np.zeros((48, 48), np.uint8)
            mask[10:20, 10:20] = 1
            mask_path = root / f"{i}.npy"
            np.save(mask_path, mask)
        out.append(
            Sample(
                str(path),
                verdict,
                mask_path=None if mask_path is None else str(mask_path),
                explanation={
                    "verdict": verdict,
                    "defect_type": "scratch" if i % 2 else "",
                    "location": "top left" if i % 2 else "",
                    "severity": "low",
                    "description": "a thin scratch" if i % 2 else "clean part",
                },
                golden=i == 3,
            )
        )
    return out


@pytest.mark.slow
def test_tiny_vlm_lora_round(
    tmp_path: Path, tiny_vlm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = _samples(tmp_path)
    manifest = RoundManifest(
        product="plate",
        kind="vlm",
        backbone="filterbank",
        base_model=str(tiny_vlm),
        train=tuple(samples[:2]),
        held_out=tuple(samples[2:]),
        hyperparameters={"steps": 3, "batch_size": 2},
        product_context={"description": "a plate", "normality_rules": ["flat"]},
    )
    path = manifest.save(tmp_path / "m.json")
    assert run(path, tmp_path / "out", "cpu") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["event"] == "done"
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "golden_answer_likelihood" in metrics["after"]
    assert (tmp_path / "out" / "adapter" / "adapter_config.json").is_file()
    config = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["lora_alpha"] == 32

    from workstation.explain.vlm import load_vlm

    loaded = load_vlm("tiny", folder=tiny_vlm, adapter=tmp_path / "out", device="cpu")
    assert loaded.model is not None


def test_adapter_on_another_base_model_is_refused(tmp_path: Path, tiny_vlm: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from workstation.core.errors import UserError
    from workstation.explain.tiny import build_tiny_vlm
    from workstation.explain.vlm import load_vlm

    other = build_tiny_vlm(tmp_path / "other", hidden_size=48)
    model = load_vlm("other", folder=other, device="cpu").model
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    peft_model.save_pretrained(tmp_path / "foreign")
    with pytest.raises(UserError, match="does not fit"):
        load_vlm("tiny", folder=tiny_vlm, adapter=tmp_path / "foreign", device="cpu")
