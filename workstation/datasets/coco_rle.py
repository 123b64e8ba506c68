"""COCO run-length encoding of binary masks (the compressed string form of pycocotools).

Runs are counted in column-major order and start with a run of zeros. The compressed
string stores each count (from the third on, as the difference to the count two places
back) in 5-bit groups with a continuation bit, offset into printable ASCII from '0'.
Written here (a few lines) rather than depending on pycocotools, which needs a compiler.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workstation.core.untrusted import limits


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Binary (H, W) mask -> run lengths in column-major order, starting with zeros."""
    flat = (np.asarray(mask) > 0).ravel(order="F").astype(np.int8)
    if flat.size == 0:
        return []
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0, *counts]
    return [int(c) for c in counts]


def counts_to_mask(counts: list[int], height: int, width: int) -> np.ndarray:
    total = height * width
    if sum(counts) != total:
        raise ValueError(f"RLE counts sum to {sum(counts)}, expected {total} ({height}x{width})")
    values = np.zeros(len(counts), dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape((width, height)).T)


def counts_to_string(counts: list[int]) -> str:
    out: list[str] = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(text):
                raise ValueError("RLE string ends in the middle of a number")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Binary mask -> COCO RLE dict ``{"size": [h, w], "counts": str}``."""
    height, width = np.asarray(mask).shape[:2]
    return {"size": [int(height), int(width)], "counts": counts_to_string(mask_to_counts(mask))}


def decode(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE dict (compressed string or uncompressed list counts) -> uint8 0/1 mask."""
    height, width = (int(v) for v in rle["size"])
    if not (height > 0 and width > 0 and height * width <= limits().image_pixels):
        raise ValueError(f"RLE size {width}x{height} is not a mask within the pixel limit")
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    elif isinstance(counts, bytes):
        counts = string_to_counts(counts.decode("ascii"))
    return counts_to_mask([int(c) for c in counts], height, width)


def area(mask: np.ndarray) -> int:
    return int(np.count_nonzero(mask))


def bbox(mask: np.ndarray) -> list[int]:
    """[x, y, width, height] of the nonzero pixels (zeros for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [0, 0, 0, 0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (RLE dict or polygon list) -> uint8 0/1 mask of (height, width)."""
    if isinstance(segmentation, dict):
        mask = decode(segmentation)
        if mask.shape != (height, width):
            raise ValueError(
                f"segmentation is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}"
            )
        return mask
    import cv2  # only polygons need it

    mask = np.zeros((height, width), dtype=np.uint8)
    for polygon in segmentation:
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 1)
    return mask
