"""The whole VLM path on a tiny random Qwen2-VL: folder load, prompt, generation,
streaming, parsing (garbage -> retry -> template fallback), caching, LoRA adapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_vlm import tiny_vlm_folder
from workstation.core.errors import MissingModelError, UserError
from workstation.core.types import AnomalyMap, Product
from workstation.explain.cache import ResultCache
from workstation.explain.prompts import ExplainRequest, PromptOptions
from workstation.explain.vlm import VlmExplainer, load_vlm

SMALL = PromptOptions(image_side=56, crop_side=28, max_crops=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_vlm_folder(tmp_path_factory.mktemp("vlm"))


@pytest.fixture(scope="module")
def loaded(folder: Path):
    return load_vlm("tiny", folder=folder, device="cpu")


def request(seed: int = 0) -> ExplainRequest:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    values = (rng.random((64, 64)) * 0.5).astype(np.float32)
    values[5:8, 30:60] = 2.0
    product = Product(id=1, name="screw", defect_vocabulary=("scratch",))
    return ExplainRequest(image=image, anomaly_map=AnomalyMap(values, 2.0, 1.0), product=product)


def test_garbage_answers_retry_then_fall_back_marked(loaded, tmp_path: Path) -> None:
    pieces: list[str] = []
    explainer = VlmExplainer(
        loaded, max_new_tokens=6, options=SMALL, cache=ResultCache(folder=tmp_path / "cache")
    )
    result = explainer.explain(request(), on_token=pieces.append)
    assert result.fallback and result.source == "template" and result.attempts == 2
    assert result.explanation.location == "upper right"  # the template's words
    assert 2 <= result.tokens <= 12 and result.raw_text.count("\n---\n") == 1
    assert "retrying" in "".join(pieces) and len(pieces) >= 2
    # a repeat is served from the cache, also by a new explainer reading the disk cache
    again = explainer.explain(request())
    assert again.cached and again.explanation == result.explanation
    other = VlmExplainer(
        loaded, max_new_tokens=6, options=SMALL, cache=ResultCache(folder=tmp_path / "cache")
    )
    assert other.explain(request()).cached
    assert not explainer.explain(request(seed=1)).cached


def test_readable_answer_is_parsed(loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    explainer = VlmExplainer(loaded, version="vlm-2", max_new_tokens=4, options=SMALL)
    answer = json.dumps({"verdict": "defective", "defect_type": "dent", "location": "top left"})
    monkeypatch.setattr(explainer, "generate", lambda prompt, **kw: (f"```json\n{answer}\n```", 9))
    result = explainer.explain(request())
    assert not result.fallback and result.source == "vlm:vlm-2" and result.attempts == 1
    assert (result.explanation.defect_type, result.explanation.location) == ("dent", "upper left")


def test_strict_prompt_on_retry(loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    explainer = VlmExplainer(loaded, max_new_tokens=4, options=SMALL)
    seen: list[bool] = []

    def fake(prompt, **kw):
        seen.append(prompt.strict)
        return ("nonsense", 3) if not prompt.strict else ('{"verdict": "ok"}', 4)

    monkeypatch.setattr(explainer, "generate", fake)
    result = explainer.explain(request())
    assert seen == [False, True] and result.explanation.verdict == "normal"
    assert result.tokens == 7 and result.attempts == 2


def test_lora_adapter_saved_then_loaded(folder: Path, loaded, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from workstation.explain.vlm import load_vlm as load

    base = load("tiny", folder=folder, device="cpu").model
    peft_model = get_peft_model(
        base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)
    version_dir = tmp_path / "vlm-1"
    peft_model.save_pretrained(version_dir / "adapter")
    explainer = VlmExplainer.load(
        "tiny",
        folder=folder,
        adapter=version_dir,
        version="vlm-1",
        device="cpu",
        max_new_tokens=3,
        options=SMALL,
    )
    assert explainer.source == "vlm:vlm-1"
    assert type(explainer.loaded.model).__name__.startswith("Peft")
    result = explainer.explain(request())
    assert result.tokens > 0
    # adapted weights change the computation
    prompt_logits = []
    for model in (loaded.model, explainer.loaded.model):
        ids = torch.tensor([[1, 20, 30, 40]])
        with torch.no_grad():
            prompt_logits.append(model(input_ids=ids).logits)
    assert not torch.allclose(*prompt_logits)


def test_adapter_without_version_or_config_is_user_error(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model version"):
        VlmExplainer.load("tiny", folder=folder, adapter=tmp_path, device="cpu")
    with pytest.raises(UserError, match="no LoRA adapter"):
        VlmExplainer.load("tiny", folder=folder, adapter=tmp_path, version="v", device="cpu")


def test_missing_model_is_one_clear_error() -> None:
    with pytest.raises(MissingModelError, match=r"models download qwen2\.5-vl-3b"):
        load_vlm("qwen2.5-vl-3b", device="cpu")


def test_folder_without_weights_is_user_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError):
        load_vlm("x", folder=tmp_path, device="cpu")


def test_chat_pair_encodes_answer_only_labels_and_trains(loaded, folder: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from workstation.core.types import Explanation
    from workstation.explain.encode import IGNORE_INDEX, encode_chat_pair
    from workstation.explain.prompts import build_chat_pair

    target = Explanation(verdict="anomalous", defect_type="scratch", location="upper right")
    pair = build_chat_pair(request(), target, options=SMALL)
    batch = encode_chat_pair(loaded.processor, pair)
    labels = batch["labels"][0]
    learned = labels[labels != IGNORE_INDEX]
    decoded = loaded.processor.tokenizer.decode(learned, skip_special_tokens=True)
    assert decoded.strip() == pair.target
    model = get_peft_model(
        load_vlm("tiny", folder=folder, device="cpu").model,
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"]),
    )
    model.train()
    loss = model(**batch).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_A" in n]
    assert torch.isfinite(loss) and grads and all(g is not None for g in grads)


@pytest.mark.parametrize(
    ("architecture", "model_class"),
    [
        ("qwen2.5-vl", "Qwen2_5_VLForConditionalGeneration"),
        ("smolvlm", "Idefics3ForConditionalGeneration"),
    ],
)
def test_other_architectures_run_the_same_path(
    architecture: str, model_class: str, tmp_path: Path
) -> None:
    from workstation.core.types import Explanation
    from workstation.explain.encode import IGNORE_INDEX, encode_chat_pair
    from workstation.explain.prompts import build_chat_pair
    from workstation.explain.tiny import build_tiny_vlm

    folder = build_tiny_vlm(tmp_path / architecture, architecture=architecture)
    explainer = VlmExplainer.load(
        architecture, folder=folder, device="cpu", max_new_tokens=3, options=SMALL
    )
    assert type(explainer.loaded.model).__name__ == model_class
    result = explainer.explain(request())
    assert result.fallback and 2 <= result.tokens <= 6
    pair = build_chat_pair(request(), Explanation(verdict="normal"), options=SMALL)
    labels = encode_chat_pair(explainer.loaded.processor, pair)["labels"][0]
    learned = explainer.loaded.processor.tokenizer.decode(
        labels[labels != IGNORE_INDEX], skip_special_tokens=True
    )
    assert learned.strip() == pair.target


def test_should_stop_cancels_without_caching(loaded) -> None:
    from workstation.core.errors import CancelledError

    explainer = VlmExplainer(loaded, max_new_tokens=50, options=SMALL)
    pieces: list[str] = []
    with pytest.raises(CancelledError):
        explainer.explain(request(), on_token=pieces.append, should_stop=lambda: True)
    assert len(explainer.cache) == 0


def test_uncached_hub_id_is_one_clear_error() -> None:
    with pytest.raises(MissingModelError, match="local Hugging Face cache"):
        load_vlm("Qwen/Qwen2-VL-2B-Instruct", device="cpu")


def test_cached_hub_id_loads_offline(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--acme--tiny-vl"
    shutil.copytree(folder, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_vlm("acme/tiny-vl", device="cpu")
    assert type(loaded.model).__name__ == "Qwen2VLForConditionalGeneration"


def test_adapter_for_another_model_is_user_error(folder: Path, tmp_path: Path) -> None:
    bad = tmp_path / "vlm-9"
    bad.mkdir()
    (bad / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 2, "target_modules": ["no_such_module"]})
    )
    with pytest.raises(UserError, match="does not fit"):
        VlmExplainer.load("tiny", folder=folder, adapter=bad, version="vlm-9", device="cpu")
