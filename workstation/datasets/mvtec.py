"""An MVTec-layout folder as labeled lists, for ``eval``, the learning benchmarks and the demo.

``train/good`` are normal references; ``test/<label>`` are evaluation images (``good`` =
normal, anything else a defect type) with masks at ``ground_truth/<label>/<stem>_mask.png``
(found as the importer finds them: ``datasets.layouts.read_mvtec_splits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workstation.core.errors import UserError
from workstation.core.types import NORMAL_LABEL
from workstation.datasets.layouts import read_mvtec_splits


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


def load_category(root: Path) -> MVTecCategory:
    """Read the folder structure (not the pixels) with the importer's MVTec reader; a wrong
    folder is a clear UserError."""
    root = Path(root)
    good = root / "train" / NORMAL_LABEL
    if not good.is_dir() or not (root / "test").is_dir():
        raise UserError(
            f"{root} is not an MVTec-layout category: expected train/good/ and test/<label>/ "
            "folders (e.g. /data/bsdata/ball_screw_drive)"
        )
    items = read_mvtec_splits(root).items
    train = tuple(
        LabeledImage(i.path, NORMAL_LABEL)
        for i in items
        if i.split == "train" and i.label == NORMAL_LABEL
    )
    test = tuple(
        LabeledImage(i.path, i.label or NORMAL_LABEL, i.mask if isinstance(i.mask, Path) else None)
        for i in items
        if i.split == "test"
    )
    if not train or not test:
        raise UserError(f"{root} has no images in train/good or test/")
    return MVTecCategory(root, train, test)
