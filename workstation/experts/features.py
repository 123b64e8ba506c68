"""Getting arbitrary images into the shape backbones expect, and maps back out.

Experts see images of any size, channel count and bit depth; backbones see RGB uint8 at
one *working shape*. The working shape keeps the product's aspect ratio and a fixed pixel
area (``image_size ** 2``), so compute per image is bounded whatever the camera, while
long thin parts are not squashed into a square.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from workstation.core.errors import UserError


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any gray / RGB / RGBA array of integer or float type as (H, W, 3) uint8 RGB.

    16-bit images are scaled by 1/257 (full range), floats are taken as [0, 1] when their
    maximum is at most 1 and as [0, 255] otherwise, RGBA is composited on black (matching
    ``workstation.core.imageio``) so transparent padding reads as background.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UserError(
            f"expected a gray, RGB or RGBA image, got an array of shape {array.shape}"
        )
    if array.size == 0:
        raise UserError("the image is empty (zero pixels)")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = (array.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise UserError("the image contains NaN or infinite pixel values")
        scale = 255.0 if float(array.max()) <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        return (array[:, :, :3].astype(np.float32) * alpha).round().astype(np.uint8)
    return np.ascontiguousarray(array)


def working_shape(
    shapes: Sequence[tuple[int, int]], *, image_size: int, multiple: int
) -> tuple[int, int]:
    """(H, W) of area ~ ``image_size**2`` with the median aspect ratio of ``shapes``.

    Never larger than the images themselves (their median area): upsampling adds no
    detail for the experts to see, only cost. Both sides are rounded to ``multiple``
    (the backbone's stride times any internal pyramid factor) so feature grids line up
    exactly with pixels.
    """
    if not shapes:
        raise UserError("no images to choose a working size from")
    native_side = float(np.sqrt(np.median([h * w for h, w in shapes])))
    image_size = min(image_size, max(native_side, multiple))
    aspect = float(np.median([h / w for h, w in shapes]))
    height = image_size * np.sqrt(aspect)
    width = image_size / np.sqrt(aspect)
    return (
        max(multiple, round(float(height) / multiple) * multiple),
        max(multiple, round(float(width) / multiple) * multiple),
    )


def resize_rgb(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize to (H, W); area averaging when shrinking avoids aliasing fine texture."""
    height, width = shape
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def check_min_size(image: np.ndarray, min_side: int, what: str = "image") -> None:
    height, width = image.shape[:2]
    if min(height, width) < min_side:
        raise UserError(
            f"{what} is {width}x{height} pixels, smaller than one {min_side}-pixel patch; "
            "use images at least that large"
        )


def grid_to_map(
    grid: np.ndarray, shape: tuple[int, int], *, sigma: float
) -> np.ndarray:
    """Patch-score grid (h, w) to an image-sized float32 map, Gaussian-smoothed.

    ``sigma`` is in output pixels; smoothing removes the blockiness of the patch grid,
    which otherwise dominates pixel-level metrics and looks like structure that is not there.
    """
    height, width = shape
    resized = cv2.resize(
        grid.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )
    if sigma > 0:
        resized = cv2.GaussianBlur(resized, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return resized
