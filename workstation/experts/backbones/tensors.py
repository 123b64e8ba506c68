"""Images in, feature maps out: the tensor plumbing every torch backbone shares.

Batch checks, normalisation into a (B, 3, H, W) tensor, the per-layer join of patch
tokens, and :class:`TorchRunner` (device placement, autocast, batching). The ViT backbones
of this package and the ImageNet CNNs of :mod:`workstation.experts.imagenet_cnn` both use
them, so they live apart from any one model family. torch is imported inside functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from workstation.core.errors import UserError

if TYPE_CHECKING:
    import torch

Precision = Literal["auto", "fp32"]
DEFAULT_BATCH = 8


def images_to_tensor(
    images: Sequence[np.ndarray],
    *,
    stride: int,
    mean: Sequence[float],
    std: Sequence[float],
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Stack RGB uint8 images into a normalised (B, 3, H', W') float32 batch.

    H', W' are ``size`` when given, else the images' size rounded down to a multiple of
    ``stride`` (at least one patch).
    """
    import cv2
    import torch

    height, width = check_batch(images)
    if size is None:
        size = (max(stride, height // stride * stride), max(stride, width // stride * stride))
    batch = np.empty((len(images), size[0], size[1], 3), dtype=np.float32)
    for i, image in enumerate(images):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise UserError(f"backbones take uint8 images; got {array.dtype}")
        if (height, width) != size:
            array = cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_AREA
                               if height >= size[0] else cv2.INTER_LINEAR)
        batch[i] = array
    batch /= 255.0
    batch -= np.asarray(mean, dtype=np.float32)
    batch /= np.asarray(std, dtype=np.float32)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def check_batch(images: Sequence[np.ndarray]) -> tuple[int, int]:
    """The batch's common (H, W); a UserError for an empty, mixed-size or non-RGB batch."""
    if len(images) == 0:
        raise UserError("no images were given to the backbone")
    shapes = {tuple(np.asarray(im).shape) for im in images}
    if len(shapes) != 1:
        raise UserError(f"images in one batch must share one size; got {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 3 or shape[2] != 3:
        raise UserError(f"backbones take RGB images (H, W, 3); got shape {shape}")
    return int(shape[0]), int(shape[1])


def combine_layers(tokens: Sequence[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
    """(B, h*w, C_i) per layer -> (B, sum C_i, h, w), unit norm per location."""
    import torch
    import torch.nn.functional as F

    scale = 1.0 / math.sqrt(len(tokens))
    parts = [F.normalize(t.float(), dim=-1) * scale for t in tokens]
    joined = torch.cat(parts, dim=-1)
    batch = joined.shape[0]
    return joined.transpose(1, 2).reshape(batch, -1, grid[0], grid[1]).contiguous()


class TorchRunner:
    """Device placement, autocast choice and batching shared by the torch backbones."""

    def __init__(self, module: Any, *, device: str, precision: Precision, batch_size: int):
        import torch

        if batch_size < 1:
            raise UserError("backbone batch size must be at least 1")
        self.module = module.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        on_cuda = device.startswith("cuda")
        self._autocast_dtype = (
            (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
            if on_cuda and precision == "auto"
            else None
        )

    def autocast(self) -> Any:
        import contextlib

        import torch

        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self._autocast_dtype)

    def pixel_batches(
        self,
        images: Sequence[np.ndarray],
        *,
        stride: int,
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = False,
    ) -> Iterator[torch.Tensor]:
        """Normalised ``batch_size`` batches on the device (see :func:`images_to_tensor`),
        each used inside inference mode and autocast."""
        import torch

        check_batch(images)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(images), self.batch_size):
                pixels = images_to_tensor(
                    images[start : start + self.batch_size], stride=stride, mean=mean, std=std
                )
                yield pixels.to(self.device, memory_format=layout)
