"""An MVTec-layout folder as labeled lists, for ``eval``, the learning benchmarks and the demo.

``train/good`` are normal references; ``test/<label>`` are evaluation images (``good`` =
normal, anything else a defect type) with masks at ``ground_truth/<label>/<stem>_mask.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workstation.core.errors import UserError
from workstation.core.types import NORMAL_LABEL

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class LabeledImage:
    path: Path
    label: str
    """``good`` or the defect type (folder name)."""
    mask_path: Path | None = None

    @property
    def anomalous(self) -> bool:
        return self.label != NORMAL_LABEL


@dataclass(frozen=True)
class MVTecCategory:
    root: Path
    train: tuple[LabeledImage, ...]
    test: tuple[LabeledImage, ...]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_category(root: Path) -> MVTecCategory:
    """Read the folder structure (not the pixels); a wrong folder is a clear UserError."""
    root = Path(root)
    good = root / "train" / NORMAL_LABEL
    if not good.is_dir() or not (root / "test").is_dir():
        raise UserError(
            f"{root} is not an MVTec-layout category: expected train/good/ and test/<label>/ "
            "folders (e.g. /data/bsdata/ball_screw_drive)"
        )
    train = tuple(LabeledImage(p, NORMAL_LABEL) for p in _images(good))
    test: list[LabeledImage] = []
    for folder in sorted(p for p in (root / "test").iterdir() if p.is_dir()):
        for path in _images(folder):
            mask = None
            if folder.name != NORMAL_LABEL:
                candidate = root / "ground_truth" / folder.name / f"{path.stem}_mask.png"
                mask = candidate if candidate.is_file() else None
            test.append(LabeledImage(path, folder.name, mask))
    if not train or not test:
        raise UserError(f"{root} has no images in train/good or test/")
    return MVTecCategory(root, train, tuple(test))
