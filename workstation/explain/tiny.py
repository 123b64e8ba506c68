"""A tiny random-weight Qwen2-VL built from its config, with a tokenizer trained locally.

Tests, the explain benchmark and the training tests need a real image-text-to-text model
that loads through the same folder path as a downloaded one, without the internet. This
writes such a folder: a one-layer Qwen2-VL, Qwen2.5-VL (the default explainer's
architecture) or SmolVLM (Idefics3) of about 0.1 M parameters, a byte-level BPE
tokenizer trained on a few lines of inspection text (so any text encodes), the Qwen2-VL
chat template and a processor with small image sizes. Its answers are random text, which
is exactly what exercises the parser's retry and the template fallback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

TinyArchitecture = Literal["qwen2-vl", "qwen2.5-vl", "smolvlm"]

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen2-VL chat template (as published with Qwen2-VL-*-Instruct), trimmed of video ids.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

DEFAULT_CORPUS: tuple[str, ...] = (
    '{"verdict": "anomalous", "defect_type": "scratch", "location": "upper left", '
    '"severity": "high", "description": "A thin scratch across the surface."}',
    '{"verdict": "normal", "defect_type": "", "location": "", "severity": "low", '
    '"description": "No defect is visible."}',
    "The part under inspection shows a compact pit in the lower right, a stain in the "
    "center and a crack near the upper center. Region facts: area, elongation, peak, "
    "threshold. Product description, normality rules, defect vocabulary.",
)

PATCH = 14
MERGE = 2

_CLASSES: dict[str, tuple[str, str, str]] = {
    "qwen2-vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
    "qwen2.5-vl": (
        "Qwen2_5_VLConfig",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen2_5_VLProcessor",
    ),
}
"""(config, model, processor) class names per architecture."""


def _vision_config(
    architecture: TinyArchitecture, hidden_size: int, heads: int, layers: int
) -> dict[str, Any]:
    common = {
        "depth": layers,
        "hidden_size": hidden_size,
        "num_heads": heads,
        "patch_size": PATCH,
        "spatial_merge_size": MERGE,
        "temporal_patch_size": 2,
    }
    if architecture == "qwen2-vl":
        return common | {"embed_dim": hidden_size}
    # Qwen2.5-VL: windowed attention with some full-attention blocks, own output width
    return common | {
        "intermediate_size": 2 * hidden_size,
        "out_hidden_size": hidden_size,
        "window_size": PATCH * MERGE * 2,
        "fullatt_block_indexes": [layers - 1],
    }


def build_tokenizer(corpus: Iterable[str] = DEFAULT_CORPUS, *, vocab_size: int = 400):
    """A byte-level BPE tokenizer with the Qwen2-VL special tokens, trained in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus) * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )


def build_tiny_vlm(
    folder: Path | str,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 1,
    max_image_side: int = 56,
    corpus: Iterable[str] = DEFAULT_CORPUS,
    architecture: TinyArchitecture = "qwen2-vl",
) -> Path:
    """Write a loadable tiny image-text-to-text model + processor to ``folder``.

    ``max_image_side`` bounds the processor's pixel budget so that each image costs only
    a handful of vision tokens.
    """
    import torch

    tokenizer = build_tokenizer(corpus)
    torch.manual_seed(seed)
    if architecture == "smolvlm":
        model, processor = _tiny_idefics3(tokenizer, hidden_size, layers, max_image_side)
    else:
        model, processor = _tiny_qwen(architecture, tokenizer, hidden_size, layers, max_image_side)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _tiny_qwen(
    architecture: TinyArchitecture,
    tokenizer: Any,
    hidden_size: int,
    layers: int,
    max_image_side: int,
) -> tuple[Any, Any]:
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    heads = 2
    half_head = hidden_size // heads // 2
    third = half_head // 3
    names = _CLASSES[architecture]
    config = getattr(transformers, names[0])(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [half_head - 2 * third, third, third],
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config=_vision_config(architecture, hidden_size, heads, layers),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = getattr(transformers, names[1])(config)
    unit = PATCH * MERGE
    pixels = {"min_pixels": unit * unit, "max_pixels": max(max_image_side, unit) ** 2}
    processor = getattr(transformers, names[2])(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    return model, processor


# SmolVLM's chat template: "User:<image>text<end_of_utterance>\nAssistant:".
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SMOLVLM_TOKENS: tuple[str, ...] = (
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)


def _tiny_idefics3(
    tokenizer: Any, hidden_size: int, layers: int, max_image_side: int
) -> tuple[Any, Any]:
    """SmolVLM's architecture (Idefics3: SigLIP-style vision tower + Llama text model)."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    tokenizer.add_special_tokens({"additional_special_tokens": list(SMOLVLM_TOKENS)})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SMOLVLM_TOKENS}
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # patches of 16 px merged 2 x 2 by the pixel shuffle: the side must divide by 32
    side = max(32, max_image_side // 32 * 32)
    scale = 2
    config = Idefics3Config(
        vision_config={
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "image_size": side,
            "patch_size": 16,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "pad_token_id": pad,
            "bos_token_id": pad,
            "eos_token_id": ids["<end_of_utterance>"],
        },
        scale_factor=scale,
        image_token_id=ids["<image>"],
        pad_token_id=pad,
    )
    model = Idefics3ForConditionalGeneration(config)
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(
            size={"longest_edge": 2 * side},
            max_image_size={"longest_edge": side},
            do_image_splitting=False,
        ),
        tokenizer=tokenizer,
        image_seq_len=(side // 16) ** 2 // scale**2,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    return model, processor
