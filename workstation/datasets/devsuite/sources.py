"""The public sets of the development suite: where each comes from and how to read it.

Each reader walks a local clone of the source repository (users clone it themselves; nothing
is downloaded here) and yields ``RawSample``s: one image, its label (``good`` or a defect
type), a mask for defects, and the *group* it belongs to (the source image, or the template
pair), so that the split never puts parts of one source image on both sides.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from workstation.core.errors import UserError
from workstation.core.types import NORMAL_LABEL

Loaded = tuple[Image.Image, "np.ndarray | None"]


@dataclass(frozen=True)
class RawSample:
    stem: str
    label: str
    """``good`` or the defect type."""
    group: str
    """Samples of one group (one source image, one template pair) land in one split."""
    load: Callable[[], Loaded]
    """The image and, for a defect, its boolean mask of the image's size."""


@dataclass(frozen=True)
class Source:
    name: str
    category: str
    repo: str
    commit: str
    folders: tuple[str, ...]
    """Clone folder names accepted under ``--sources`` (the first that exists is read)."""
    license: str
    citation: str
    about: str
    read: Callable[[Path], Iterator[RawSample]]

    def root(self, sources: Path) -> Path:
        for folder in self.folders:
            if (sources / folder).is_dir():
                return sources / folder
        raise UserError(
            f"no clone of {self.repo} under {sources} (looked for {', '.join(self.folders)}); "
            f"clone it there: git clone {self.repo} {sources / self.folders[0]}"
        )


def _binary(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask.convert("L")) > 127


def _open_pair(image: Path, mask: Path | None) -> Loaded:
    try:
        with Image.open(image) as im:
            im.load()
            pixels = im.copy()
        if mask is None:
            return pixels, None
        with Image.open(mask) as m:
            return pixels, _binary(m)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {image} or its mask: {exc}") from None


# --- Magnetic tile (Huang et al.) ---------------------------------------------------------

_MT_TYPES = {
    "MT_Blowhole": "blowhole",
    "MT_Break": "break",
    "MT_Crack": "crack",
    "MT_Fray": "fray",
    "MT_Uneven": "uneven",
    "MT_Free": NORMAL_LABEL,
}


def read_magnetic_tile(root: Path) -> Iterator[RawSample]:
    """``MT_<type>/Imgs/<stem>.jpg`` with the mask ``<stem>.png`` beside it; MT_Free holds
    the normals (their all-black masks are ignored)."""
    for folder, label in _MT_TYPES.items():
        for image in sorted((root / folder / "Imgs").glob("*.jpg")):
            mask = image.with_suffix(".png") if label != NORMAL_LABEL else None
            if mask is not None and not mask.is_file():
                continue
            yield RawSample(image.stem, label, image.stem, lambda i=image, m=mask: _open_pair(i, m))


# --- DeepPCB (Tang et al.) ----------------------------------------------------------------

_PCB_TYPES = {1: "open", 2: "short", 3: "mousebite", 4: "spur", 5: "copper", 6: "pin_hole"}


def _pcb_boxes(annotation: Path) -> list[tuple[int, int, int, int, int]]:
    boxes = []
    for line in annotation.read_text().split("\n"):
        parts = line.replace(",", " ").split()
        if len(parts) == 5:
            x1, y1, x2, y2, kind = (int(p) for p in parts)
            boxes.append((x1, y1, x2, y2, kind))
    return boxes


def _pcb_tested(image: Path, boxes: list[tuple[int, int, int, int, int]]) -> Loaded:
    pixels, _ = _open_pair(image, None)
    mask = np.zeros((pixels.height, pixels.width), dtype=bool)
    for x1, y1, x2, y2, _kind in boxes:
        mask[max(y1, 0) : y2 + 1, max(x1, 0) : x2 + 1] = True
    return pixels, mask


def read_deeppcb(root: Path) -> Iterator[RawSample]:
    """``PCBData/group*/<id>/<n>_temp.jpg`` (defect-free template) and ``<n>_test.jpg``
    (tested image) with boxes ``x1 y1 x2 y2 type`` in ``<id>_not/<n>.txt``; the mask is the
    union of the boxes and the label the image's most frequent defect type."""
    data = root / "DeepPCB" / "PCBData" if (root / "DeepPCB").is_dir() else root / "PCBData"
    for tested in sorted(data.glob("group*/*/*_test.jpg")):
        pair = tested.name.removesuffix("_test.jpg")
        template = tested.with_name(f"{pair}_temp.jpg")
        annotation = tested.parent.parent / f"{tested.parent.name}_not" / f"{pair}.txt"
        if not template.is_file() or not annotation.is_file():
            continue
        boxes = _pcb_boxes(annotation)
        if not boxes:
            continue
        kinds = Counter(b[4] for b in boxes)
        label = _PCB_TYPES.get(min(kinds, key=lambda k: (-kinds[k], k)), "other")
        yield RawSample(f"{pair}_temp", NORMAL_LABEL, pair, lambda t=template: _open_pair(t, None))
        yield RawSample(f"{pair}_test", label, pair, lambda t=tested, b=boxes: _pcb_tested(t, b))


# --- CrackForest (Shi, Cui et al.) --------------------------------------------------------

CRACK_TILE = 160
"""The 480x320 road images are cut into six 160 px tiles: the set has no crack-free images,
so tiles without a crack pixel are the normals and tiles with one are the defects."""
_CRACK_MIN_PIXELS = 50
"""Tiles with 1-49 crack pixels (a crack ending at the tile's edge) are neither clearly
normal nor clearly defective; they are left out."""


def _parse_seg(path: Path) -> np.ndarray:
    """The Berkeley ``.seg`` text format: a header, then ``segment row col0 col1`` runs;
    segment 0 is the road, every other segment a crack."""
    lines = path.read_text().split("\n")
    header: dict[str, str] = {}
    at = 0
    while at < len(lines) and lines[at].strip() != "data":
        key, _, value = lines[at].partition(" ")
        header[key] = value.strip()
        at += 1
    if at == len(lines) or "width" not in header or "height" not in header:
        raise UserError(f"{path} is not a .seg file (no width/height/data)")
    mask = np.zeros((int(header["height"]), int(header["width"])), dtype=bool)
    for line in lines[at + 1 :]:
        parts = line.split()
        if len(parts) == 4:
            segment, row, c0, c1 = (int(p) for p in parts)
            if segment:
                mask[row, c0 : c1 + 1] = True
    return mask


def _crack_tile(image: Path, seg: Path, box: tuple[int, int, int, int], defect: bool) -> Loaded:
    pixels, _ = _open_pair(image, None)
    x, y, w, h = box
    tile = pixels.crop((x, y, x + w, y + h))
    if not defect:
        return tile, None
    return tile, _parse_seg(seg)[y : y + h, x : x + w]


def read_crackforest(root: Path) -> Iterator[RawSample]:
    for seg in sorted((root / "seg").glob("*.seg")):
        image = root / "image" / f"{seg.stem}.jpg"
        if not image.is_file():
            continue
        mask = _parse_seg(seg)
        rows, cols = mask.shape[0] // CRACK_TILE, mask.shape[1] // CRACK_TILE
        for r in range(rows):
            for c in range(cols):
                box = (c * CRACK_TILE, r * CRACK_TILE, CRACK_TILE, CRACK_TILE)
                count = int(mask[box[1] : box[1] + CRACK_TILE, box[0] : box[0] + CRACK_TILE].sum())
                if 0 < count < _CRACK_MIN_PIXELS:
                    continue
                defect = count > 0
                yield RawSample(
                    f"{seg.stem}_r{r}c{c}",
                    "crack" if defect else NORMAL_LABEL,
                    seg.stem,
                    lambda i=image, s=seg, b=box, d=defect: _crack_tile(i, s, b, d),
                )


# --- KolektorSDD (Tabernik et al.), as polygons in a YOLO-segment copy ----------------------


def _polygon_mask(label: Path, size: tuple[int, int]) -> np.ndarray:
    """YOLO segment lines ``class x1 y1 x2 y2 ...`` (coordinates in 0..1) as one mask."""
    import cv2

    width, height = size
    mask = np.zeros((height, width), np.uint8)
    for line in label.read_text().split("\n"):
        values = line.split()[1:]
        if len(values) < 6 or len(values) % 2:
            continue
        points = np.asarray(values, dtype=np.float64).reshape(-1, 2) * (width, height)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask > 0


def _kolektor_pair(image: Path, label: Path) -> Loaded:
    pixels, _ = _open_pair(image, None)
    return pixels, _polygon_mask(label, pixels.size)


def read_kolektor(root: Path) -> Iterator[RawSample]:
    """``Datasets/images/{train,val}/<n>.jpg`` with ``Datasets/labels/.../<n>.txt``: an empty
    label file is a normal part, a non-empty one holds the crack's polygons."""
    for image in sorted((root / "Datasets" / "images").glob("*/*.jpg")):
        label = root / "Datasets" / "labels" / image.parent.name / f"{image.stem}.txt"
        if not label.is_file():
            continue
        stem = image.stem
        if not label.read_text().strip():
            yield RawSample(stem, NORMAL_LABEL, stem, lambda i=image: _open_pair(i, None))
            continue
        yield RawSample(stem, "crack", stem, lambda i=image, t=label: _kolektor_pair(i, t))


SOURCES: tuple[Source, ...] = (
    Source(
        "magnetic_tile",
        "tile",
        "https://github.com/abin24/Magnetic-tile-defect-datasets..git",
        "cc4eb530b57b9cb7225bf76023873043ffd50655",
        ("Magnetic-tile-defect-datasets.", "Magnetic-tile-defect-datasets", "Magnetic-Tile-Defect"),
        "no licence file; the authors ask users to cite the paper (research use)",
        "Y. Huang, C. Qiu, K. Yuan: Surface defect saliency of magnetic tile. "
        "The Visual Computer 36, 85-96 (2020). doi:10.1007/s00371-018-1588-5",
        "Gray magnetic-tile surfaces (texture), image sizes vary (about 100-600 px), five "
        "defect types with pixel masks: blowhole, break, crack, fray, uneven.",
        read_magnetic_tile,
    ),
    Source(
        "deeppcb",
        "pcb",
        "https://github.com/tangsanli5201/DeepPCB.git (also carried in "
        "https://github.com/Charmve/Surface-Defect-Detection, commit "
        "d46cc89217df5c3c4a02e899dc6efb145ab95dea, folder DeepPCB/)",
        "d46cc89217df5c3c4a02e899dc6efb145ab95dea (Charmve/Surface-Defect-Detection)",
        ("DeepPCB", "Surface-Defect-Detection"),
        "MIT (DeepPCB/LICENSE)",
        "S. Tang, F. He, X. Huang, J. Yang: Online PCB defect detector on a new PCB defect "
        "dataset. arXiv:1902.06197 (2019)",
        "Binarised printed-circuit-board crops, fixed 640x640 (written at 512), six defect "
        "types. Masks are the annotated boxes (coarser than the defects); the authors added "
        "artificial defects to the tested images. Normals are the defect-free templates.",
        read_deeppcb,
    ),
    Source(
        "crackforest",
        "road",
        "https://github.com/cuilimeng/CrackForest-dataset.git",
        "ed57c2d96754e6c7d105805cd29aeeb3a799f267",
        ("CrackForest-dataset", "CrackForest"),
        "non-commercial research use only (README, section 2)",
        "Y. Shi, L. Cui, Z. Qi, F. Meng, Z. Chen: Automatic road crack detection using random "
        "structured forests. IEEE T-ITS 17(12), 3434-3445 (2016)",
        "Colour road-surface photographs (texture) cut into 160x160 tiles; crack masks from "
        "the pixel-level .seg annotations. Normals are crack-free tiles of other photographs.",
        read_crackforest,
    ),
    Source(
        "kolektor",
        "commutator",
        "https://github.com/stoy95536/KolektorSDD_Yolov8_Datasets.git",
        "81e5cf333010730a05f11d1c0357bc0f24ecf502",
        ("KolektorSDD_Yolov8_Datasets", "KolektorSDD"),
        "KolektorSDD: CC BY-NC-SA 4.0 (non-commercial research); the copy has no licence file",
        "D. Tabernik, S. Sela, J. Skvarc, D. Skocaj: Segmentation-based deep-learning approach "
        "for surface-defect detection. J. Intell. Manuf. 31, 759-776 (2020)",
        "Gray electrical-commutator surfaces, 500 x about 1250 px, one defect type (thin "
        "cracks and fractures, often a few pixels wide); 347 normal parts and 52 defective, "
        "masks rasterised from the copy's segment polygons.",
        read_kolektor,
    ),
)
