"""Tiny random-weight models built from configs, so tests exercise the real loading paths offline.

The open_clip model uses the default ``SimpleTokenizer`` whose BPE vocabulary ships inside
the open_clip package, which is why the text tower keeps the full 49408-token vocabulary
(a narrow 32-wide embedding keeps it small). Folders are written in the same layouts the
application loads: open_clip's ``local-dir`` layout (``open_clip_config.json`` +
``open_clip_model.safetensors``) and a transformers ``save_pretrained`` folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_IMAGE_SIZE = 64
TINY_CLIP_PATCH = 16
TINY_DINO_PATCH = 8


def tiny_clip_config() -> dict[str, Any]:
    """open_clip model config: 64 px input, 16 px patches (4 x 4 grid), 3 blocks."""
    return {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": TINY_IMAGE_SIZE,
            "layers": 3,
            "width": 64,
            "head_width": 32,
            "patch_size": TINY_CLIP_PATCH,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }


def build_tiny_clip(seed: int = 0) -> Any:
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**tiny_clip_config())
    return model.eval()


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """Write a tiny CLIP in open_clip's ``local-dir`` layout; returns the folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_clip(seed)
    config = {
        "model_cfg": tiny_clip_config(),
        "preprocess_cfg": {
            "size": TINY_IMAGE_SIZE,
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
        },
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


def tiny_dinov2_config() -> Any:
    from transformers import Dinov2Config

    return Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=TINY_DINO_PATCH,
        image_size=TINY_IMAGE_SIZE,
    )


def save_tiny_dinov2(folder: Path, seed: int = 0) -> Path:
    """Write a tiny DINOv2 with ``save_pretrained`` (config.json + model.safetensors)."""
    import torch
    from transformers import Dinov2Model

    torch.manual_seed(seed)
    model = Dinov2Model(tiny_dinov2_config())
    model.save_pretrained(folder)
    return folder
