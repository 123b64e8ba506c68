"""Expert-guided prompt building: images, region facts, product context, editable templates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap, Explanation, Product
from workstation.explain.parse import parse_explanation
from workstation.explain.prompts import (
    ExplainRequest,
    PromptOptions,
    build_chat_pair,
    build_prompt,
    render,
)
from workstation.paths import resources_dir

PRODUCT = Product(
    id=1,
    name="ball screw",
    description="A polished steel spindle.",
    normality_rules=("thread flanks are smooth", "small reflections are normal"),
    defect_vocabulary=("pitting", "scratch"),
)
OPTIONS = PromptOptions(image_side=64, crop_side=32, max_crops=2)


def request(*, reference: bool = True, anomalous: bool = True) -> ExplainRequest:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    values = (rng.random((90, 120)) * 0.5).astype(np.float32)
    if anomalous:
        values[70:80, 5:15] = 1.8  # lower left pit
        values[10:12, 60:110] = 1.2  # upper right scratch
    return ExplainRequest(
        image=image,
        anomaly_map=AnomalyMap(values, score=float(values.max()), threshold=1.0),
        product=PRODUCT,
        reference=image[::-1].copy() if reference else None,
    )


def texts(prompt) -> str:
    return "\n".join(
        part["text"]
        for message in prompt.messages
        for part in message["content"]
        if part["type"] == "text"
    )


def test_prompt_carries_images_facts_and_context() -> None:
    prompt = build_prompt(request(), options=OPTIONS)
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    placeholders = [p for p in prompt.messages[1]["content"] if p["type"] == "image"]
    # image, overlay, two crops, reference
    assert len(placeholders) == len(prompt.images) == 5
    assert max(prompt.images[0].size) == 64 and max(prompt.images[2].size) == 32
    text = texts(prompt)
    for expected in (
        "ball screw",
        "A polished steel spindle.",
        "- thread flanks are smooth",
        "pitting, scratch",
        "2 region(s) above the threshold",
        "lower left",
        "upper right",
        "peak 1.8x the threshold",
        "elongated",
        "heatmap",
        "normal reference",
        "expert verdict: anomalous",
        '{"verdict"',
    ):
        assert expected in text, expected
    assert "{" + "region_facts}" not in text


def test_overlay_marks_the_region() -> None:
    prompt = build_prompt(request(), options=PromptOptions(image_side=120, max_crops=0))
    original, overlay = (np.asarray(im, dtype=np.int16) for im in prompt.images[:2])
    assert original.shape == overlay.shape
    assert np.abs(original - overlay).mean() > 5


def test_normal_map_and_no_reference() -> None:
    prompt = build_prompt(request(reference=False, anomalous=False), options=OPTIONS)
    assert len(prompt.images) == 2  # image and overlay only
    text = texts(prompt)
    assert "no region exceeds the threshold" in text and "expert verdict: normal" in text


def test_strict_retry_and_hash() -> None:
    plain = build_prompt(request(), options=OPTIONS)
    strict = build_prompt(request(), options=OPTIONS, strict=True)
    assert strict.strict and "ONLY a single JSON object" in texts(strict)
    assert plain.hash == build_prompt(request(), options=OPTIONS).hash
    assert plain.hash != strict.hash
    assert plain.hash != build_prompt(request(reference=False), options=OPTIONS).hash


def test_edited_template_changes_prompt_and_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = build_prompt(request(), options=OPTIONS)
    copy = tmp_path / "resources"
    shutil.copytree(resources_dir() / "prompts", copy / "prompts")
    user = copy / "prompts" / "user.md"
    user.write_text("Inspect the {product_name} please.\n" + user.read_text())
    monkeypatch.setenv("IAD_WORKSTATION_RESOURCES", str(copy))
    after = build_prompt(request(), options=OPTIONS)
    assert "Inspect the ball screw please." in texts(after) and after.hash != before.hash
    user.write_text("Look at {nonsense}")
    with pytest.raises(UserError, match="nonsense"):
        build_prompt(request(), options=OPTIONS)
    user.unlink()
    with pytest.raises(UserError, match=r"user\.md"):
        build_prompt(request(), options=OPTIONS)


def test_render_leaves_json_braces() -> None:
    assert render('{a} {"k": 1}', {"a": "x"}) == 'x {"k": 1}'


def test_bad_inputs_are_user_errors() -> None:
    with pytest.raises(UserError, match="RGB uint8"):
        ExplainRequest(
            image=np.zeros((8, 8), np.uint8), anomaly_map=AnomalyMap(np.zeros((8, 8)), 0.0)
        )
    with pytest.raises(UserError):
        PromptOptions(image_side=4)


def test_chat_pair_for_training() -> None:
    target = Explanation(
        verdict="anomalous",
        defect_type="pitting",
        location="lower left",
        severity="medium",
        description="A small pit.",
    )
    pair = build_chat_pair(request(), target, options=OPTIONS)
    assert [m["role"] for m in pair.messages] == ["system", "user", "assistant"]
    assert pair.messages[-1]["content"][0]["text"] == pair.target
    assert json.loads(pair.target)["defect_type"] == "pitting"
    assert parse_explanation(pair.target) == target
    assert pair.prompt_hash == build_prompt(request(), options=OPTIONS).hash
    assert len(pair.images) == 5


def test_mask_request_for_training_feedback() -> None:
    from workstation.explain.prompts import mask_request

    image = np.zeros((60, 90, 3), np.uint8)
    mask = np.zeros((60, 90), np.uint8)
    mask[45:55, 70:85] = 1
    text = texts(build_prompt(mask_request(image, mask, product=PRODUCT), options=OPTIONS))
    assert "lower right" in text and "expert verdict: anomalous" in text
    normal = texts(build_prompt(mask_request(image, None), options=OPTIONS))
    assert "expert verdict: normal" in normal and "unknown product" in normal
