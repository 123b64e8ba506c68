"""What the CLIP and DINOv2 backbones share: one base class for their set-up.

Both wrap a ViT in a :class:`TorchRunner`, know their patch stride and block count, and
pick the blocks whose patch tokens become features (the catalogue's choice, else two
thirds of the way down and the last). Each family's module reads stride and depth from its
own model and hands them here, so that set-up is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workstation.core.errors import UserError
from workstation.experts.backbones.tensors import DEFAULT_BATCH, Precision, TorchRunner
from workstation.pretrained.catalog import CatalogEntry


class ViTBackbone:
    """Name, runner, model, patch stride, depth and the chosen feature blocks (1-based)."""

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        device: str,
        entry: CatalogEntry | None,
        layers: Sequence[int] | None,
        patch_stride: int,
        depth: int,
        precision: Precision = "auto",
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.name = name
        self._runner = TorchRunner(model, device=device, precision=precision,
                                    batch_size=batch_size)
        self.model = self._runner.module
        self.patch_stride = patch_stride
        self.depth = depth
        self.layers = _check_layers(layers or _default_layers(entry, depth), depth, name)

    @property
    def device(self) -> str:
        return self._runner.device


def _check_layers(layers: Sequence[int], depth: int, name: str) -> tuple[int, ...]:
    chosen = tuple(sorted(set(int(i) for i in layers)))
    if not chosen or chosen[0] < 1 or chosen[-1] > depth:
        raise UserError(
            f"backbone {name!r} has {depth} blocks; feature layers must be within 1..{depth}, "
            f"got {list(layers)}"
        )
    return chosen


def _default_layers(entry: CatalogEntry | None, depth: int) -> tuple[int, ...]:
    if entry is not None and entry.feature_layers and max(entry.feature_layers) <= depth:
        return entry.feature_layers
    return tuple(sorted({max(1, round(depth * 2 / 3)), depth}))
