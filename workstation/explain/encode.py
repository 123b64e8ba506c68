"""Turning a chat pair into model inputs with labels, for the VLM LoRA rounds.

Only the assistant's answer is learned: every prompt token (system, user text, image
placeholders) gets the ignore label -100. Both halves go through the model's own chat
template and processor, so the answer is tokenised exactly as the explainer will see the
model produce it, whatever the model family.
"""

from __future__ import annotations

from typing import Any

from workstation.core.errors import UserError
from workstation.explain.prompts import ChatPair

IGNORE_INDEX = -100


def encode_chat_pair(processor: Any, pair: ChatPair) -> dict[str, Any]:
    """``processor`` outputs for the whole conversation plus ``labels`` (answer tokens only).

    Returns a dict of batch-of-one tensors (``input_ids``, ``attention_mask``, ``labels``,
    and the processor's image tensors such as ``pixel_values`` and ``image_grid_thw``).
    """
    full_text = processor.apply_chat_template(pair.messages, tokenize=False)
    prompt_text = processor.apply_chat_template(
        pair.messages[:-1], add_generation_prompt=True, tokenize=False
    )
    if not full_text.startswith(prompt_text):
        raise UserError(
            "this model's chat template does not put the answer after the generation prompt; "
            "it cannot be fine-tuned with answer-only labels"
        )
    images = pair.images or None
    full = processor(text=[full_text], images=images, return_tensors="pt")
    prompt = processor(text=[prompt_text], images=images, return_tensors="pt")
    prompt_length = int(prompt["input_ids"].shape[1])
    labels = full["input_ids"].clone()
    labels[:, :prompt_length] = IGNORE_INDEX
    if "attention_mask" in full:
        labels[full["attention_mask"] == 0] = IGNORE_INDEX
    encoded = dict(full)
    encoded["labels"] = labels
    return encoded
