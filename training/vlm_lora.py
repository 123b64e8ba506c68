"""VLM round: peft LoRA on the language model of the explainer VLM, from corrected texts.

Each training example is a chat pair built exactly as the explainer prompts at inspection
time (product context, normality rules, region facts from the mask, reference image) with
the inspector-corrected explanation as the answer; only the answer tokens are learned.
LoRA (r=16, alpha=32 by default) goes on the language model's attention and MLP
projections; the vision tower stays frozen. bf16 and gradient checkpointing on CUDA;
micro-batches of one example with gradient accumulation, so memory does not depend on
how long each prompt is. The held-out side is scored by the mean per-token likelihood of
the corrected answers, before (base or parent adapter) and after.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training import distributed
from training.adapter import EtaClock
from training.contract import ProgressEvent, RoundManifest, Sample
from training.data import load_sample_mask
from training.evaluate import gated_result
from training.kinds.vlm import VlmHyperparameters, check_feedback
from workstation.core.imageio import read_image
from workstation.core.types import Explanation, Product

Emit = Callable[[ProgressEvent], None]
LANGUAGE_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
"""Attention and MLP projections of the language model only: the vision tower's modules
(``visual.*``, some of which share these names in Qwen2.5-VL) never match."""
ADAPTER_SUBDIR = "adapter"


def chat_pairs(manifest: RoundManifest, samples: Sequence[Sample]) -> list[Any]:
    """Chat pairs for the samples that carry a corrected explanation."""
    from workstation.explain.prompts import build_chat_pair, mask_request

    context = manifest.product_context
    product = Product(
        id=0,
        name=manifest.product,
        description=str(context.get("description", "")),
        normality_rules=tuple(context.get("normality_rules", ())),
        defect_vocabulary=tuple(context.get("defect_vocabulary", ())),
    )
    reference = read_image(manifest.references[0]) if manifest.references else None
    pairs = []
    for sample in samples:
        if not sample.explanation:
            continue
        image = read_image(sample.image_path)
        mask = load_sample_mask(sample, image.shape[:2]) if sample.mask_path else None
        request = mask_request(image, mask, product=product, reference=reference)
        pairs.append(build_chat_pair(request, Explanation(**sample.explanation)))
    return pairs


def _answer_likelihood(model: Any, batches: Sequence[dict[str, Any]]) -> float:
    """exp(-mean answer-token loss): 1.0 = the model is sure of every corrected answer."""
    import torch

    if not batches:
        return math.nan
    total = 0.0
    with torch.inference_mode():
        for batch in batches:
            total += float(model(**batch).loss)
    return math.exp(-total / len(batches))


def _to_device(encoded: dict[str, Any], device: str, dtype: Any) -> dict[str, Any]:
    import torch

    out = {}
    for key, value in encoded.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if value.is_floating_point():
                value = value.to(dtype)
        out[key] = value
    return out


def run_vlm_round(
    manifest: RoundManifest, out: Path, *, device: str, emit: Emit
) -> dict[str, object]:
    import torch
    from peft import LoraConfig, get_peft_model

    from workstation.explain.encode import encode_chat_pair
    from workstation.explain.vlm import load_vlm

    check_feedback(manifest.train)
    hyper: VlmHyperparameters = manifest.typed_hyperparameters()
    name = hyper.model or manifest.base_model
    folder = Path(name) if Path(name).is_dir() else None
    loaded = load_vlm(folder.name if folder else name, folder=folder, device=device)
    model, processor = loaded.model, loaded.processor
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    encode = [
        _to_device(encode_chat_pair(processor, pair), device, dtype)
        for pair in chat_pairs(manifest, manifest.train)
    ]
    held_samples = [s for s in manifest.held_out if s.explanation]
    held = [
        _to_device(encode_chat_pair(processor, pair), device, dtype)
        for pair in chat_pairs(manifest, held_samples)
    ]
    golden = [b for b, s in zip(held, held_samples, strict=True) if s.golden]
    world = distributed.world()
    model.eval()
    before = {}
    if world.is_main:  # rank 0 alone judges
        before["held_out_answer_likelihood"] = _answer_likelihood(model, held)
        if golden:
            before["golden_answer_likelihood"] = _answer_likelihood(model, golden)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if device.startswith("cuda"):
        # DDP and re-entrant checkpointing both hook the backward pass and clash.
        options = {"use_reentrant": False} if world.enabled else None
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        model.enable_input_require_grads()
    config = LoraConfig(
        r=hyper.rank,
        lora_alpha=hyper.alpha,
        lora_dropout=hyper.dropout,
        target_modules=LANGUAGE_TARGETS,
        bias="none",
    )
    model = get_peft_model(model, config)
    trained = world.wrap(model, device)
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=hyper.learning_rate
    )
    generator = torch.Generator().manual_seed(manifest.seed)
    accumulate = hyper.batch_size * hyper.grad_accumulation
    clock = EtaClock()
    last_emit = -math.inf
    model.train()
    for step in range(1, hyper.steps + 1):
        # Every rank draws the step's examples alike and takes its rank-strided shard.
        drawn = torch.randint(len(encode), (accumulate,), generator=generator).tolist()
        mine = world.shard(drawn)
        loss_sum = 0.0
        for i, index in enumerate(mine):
            with world.accumulating(trained, last=i == len(mine) - 1):
                loss = trained(**encode[index]).loss / accumulate
                (loss * world.size).backward()  # DDP averages over ranks; the sum is wanted
            loss_sum += float(loss.detach())
        loss_sum = world.total(loss_sum)
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        now = time.monotonic()
        if now - last_emit >= 0.5 or step == hyper.steps:
            last_emit = now
            emit(
                ProgressEvent(
                    "step",
                    step=step,
                    total=hyper.steps,
                    loss=loss_sum,
                    eta_s=clock.eta(step, hyper.steps),
                )
            )
    if not world.is_main:
        return {}  # rank 0 alone saves, judges and decides
    model.eval()
    after = {"held_out_answer_likelihood": _answer_likelihood(model, held)}
    if golden:
        after["golden_answer_likelihood"] = _answer_likelihood(model, golden)
    model.save_pretrained(out / ADAPTER_SUBDIR)
    return gated_result(before, after, manifest.extras.regression_tolerance) | {
        "base_model": loaded.name,
        "lora": {"r": hyper.rank, "alpha": hyper.alpha, "targets": LANGUAGE_TARGETS},
    }
