"""DINOv2 (transformers) backbone: normed patch tokens of several blocks.

The class token and any register tokens are dropped; each chosen block's patch tokens go
through the model's final layernorm, as ``get_intermediate_layers(norm=True)`` does.
transformers positions any grid itself, so images only need a size that is a multiple of
the patch. torch is imported inside methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workstation.experts.backbones.tensors import DEFAULT_BATCH, Precision, combine_layers
from workstation.experts.backbones.vit import ViTBackbone
from workstation.pretrained.catalog import IMAGENET_MEAN, IMAGENET_STD, CatalogEntry

if TYPE_CHECKING:
    import torch


class Dinov2Backbone(ViTBackbone):
    """DINOv2 (transformers): normed patch tokens of several blocks; cls/registers dropped."""

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        device: str,
        entry: CatalogEntry | None,
        layers: Sequence[int] | None,
        precision: Precision = "auto",
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        config = model.config
        super().__init__(
            model, name=name, device=device, entry=entry, layers=layers,
            patch_stride=int(config.patch_size), depth=int(config.num_hidden_layers),
            precision=precision, batch_size=batch_size,
        )
        self.prefix_tokens = 1 + int(getattr(config, "num_register_tokens", 0) or 0)

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        import torch

        outputs = []
        stride = self.patch_stride
        for pixels in self._runner.pixel_batches(
            images, stride=stride, mean=IMAGENET_MEAN, std=IMAGENET_STD
        ):
            grid = (pixels.shape[-2] // stride, pixels.shape[-1] // stride)
            hidden = self.model(pixel_values=pixels, output_hidden_states=True).hidden_states
            normed = [
                self.model.layernorm(hidden[i][:, self.prefix_tokens :]) for i in self.layers
            ]
            outputs.append(combine_layers(normed, grid))
        return torch.cat(outputs).float()
