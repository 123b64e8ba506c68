"""Split one source's samples into a few-shot MVTec-layout category and write it.

The split is by group (one source image or template pair never lands on both sides), seeded,
and capped so that an ``eval`` of every set stays feasible on two cores: at most
``train_cap`` normals in ``train/good``, ``test_good_cap`` normals and ``test_defect_cap``
defects (taken round-robin over the defect types, so rare types are not crowded out) in
``test/``. Images larger than ``max_side`` on their long side are scaled down (masks with
nearest neighbour), so one set's resolution does not dominate the suite's run time.
"""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from workstation.core.errors import UserError
from workstation.core.types import NORMAL_LABEL
from workstation.datasets.devsuite.sources import RawSample, Source


@dataclass(frozen=True)
class SplitCaps:
    train_cap: int = 80
    test_good_cap: int = 60
    test_defect_cap: int = 90
    max_side: int = 512
    seed: int = 0

    MIN_SIDE = 32
    """Below this a thin defect's mask rounds away (``--max-side 0`` kept 2 of 52 cracks)."""

    def __post_init__(self) -> None:
        if self.max_side < self.MIN_SIDE:
            raise UserError(
                f"--max-side {self.max_side} is too small: at least {self.MIN_SIDE} pixels "
                "(masks of thin defects vanish when scaled that far)"
            )
        if min(self.train_cap, self.test_good_cap, self.test_defect_cap) < 1:
            raise UserError("every split cap must be at least 1")


@dataclass(frozen=True)
class Split:
    train: tuple[RawSample, ...]
    test_good: tuple[RawSample, ...]
    test_defect: tuple[RawSample, ...]


def split_samples(samples: list[RawSample], caps: SplitCaps) -> Split:
    """Shuffle the groups with the seed; groups go to training until it holds ``train_cap``
    normals (their defects are dropped), the rest feed the test side."""
    groups: dict[str, list[RawSample]] = defaultdict(list)
    for sample in samples:
        groups[sample.group].append(sample)
    order = sorted(groups)
    random.Random(caps.seed).shuffle(order)
    train: list[RawSample] = []
    test_good: list[RawSample] = []
    defects: dict[str, list[RawSample]] = defaultdict(list)
    for group in order:
        members = groups[group]
        normals = [s for s in members if s.label == NORMAL_LABEL]
        if len(train) < caps.train_cap and normals:
            train += normals[: caps.train_cap - len(train)]
            continue
        test_good += normals
        for sample in members:
            if sample.label != NORMAL_LABEL:
                defects[sample.label].append(sample)
    return Split(
        tuple(train),
        tuple(test_good[: caps.test_good_cap]),
        tuple(_round_robin(defects, caps.test_defect_cap)),
    )


def _round_robin(by_type: dict[str, list[RawSample]], cap: int) -> list[RawSample]:
    picked: list[RawSample] = []
    queues = [list(by_type[t]) for t in sorted(by_type)]
    while len(picked) < cap and any(queues):
        for queue in queues:
            if queue and len(picked) < cap:
                picked.append(queue.pop(0))
    return picked


def _fit(
    image: Image.Image, mask: np.ndarray | None, max_side: int
) -> tuple[Image.Image, np.ndarray | None]:
    long_side = max(image.size)
    if long_side <= max_side:
        return image, mask
    scale = max_side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    if mask is not None:
        small = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        mask = np.asarray(small) > 127
    return image, mask


def _write(sample: RawSample, folder: Path, masks: Path | None, max_side: int) -> bool:
    """Write one image (and its mask); a defect whose mask is empty after scaling is skipped,
    since it would count as a defect nobody can see."""
    image, mask = sample.load()
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    image, mask = _fit(image, mask, max_side)
    if masks is not None and (mask is None or not mask.any()):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / f"{sample.stem}.png")
    if masks is not None and mask is not None:
        masks.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(masks / f"{sample.stem}_mask.png")
    return True


@dataclass(frozen=True)
class Written:
    category: Path
    train: int
    test_good: int
    test_defect: dict[str, int]


def write_category(source: Source, samples: list[RawSample], out: Path, caps: SplitCaps) -> Written:
    """Write ``out/<source>/<category>/`` in the MVTec layout and the set's README."""
    split = split_samples(samples, caps)
    category = out / source.name / source.category
    if category.exists():
        shutil.rmtree(category)
    train = sum(
        _write(s, category / "train" / NORMAL_LABEL, None, caps.max_side) for s in split.train
    )
    good = sum(
        _write(s, category / "test" / NORMAL_LABEL, None, caps.max_side) for s in split.test_good
    )
    defects: dict[str, int] = defaultdict(int)
    for s in split.test_defect:
        if _write(
            s, category / "test" / s.label, category / "ground_truth" / s.label, caps.max_side
        ):
            defects[s.label] += 1
    written = Written(category, train, good, dict(sorted(defects.items())))
    (out / source.name / "README.md").write_text(readme(source, written, caps))
    return written


def readme(source: Source, written: Written, caps: SplitCaps) -> str:
    defects = ", ".join(f"{k} {v}" for k, v in written.test_defect.items())
    return (
        f"# {source.name}\n\n{source.about}\n\n"
        f"- Source: {source.repo}\n- Commit read: {source.commit}\n"
        f"- Licence: {source.license}\n- Cite: {source.citation}\n\n"
        f"Built by `python -m workstation.datasets.devsuite build` (seed {caps.seed}): "
        f"train/good {written.train}, test/good {written.test_good}, test defects "
        f"{sum(written.test_defect.values())} ({defects}). Split by source image/pair, "
        f"capped at {caps.train_cap}/{caps.test_good_cap}/{caps.test_defect_cap}, long side "
        f"at most {caps.max_side} px. Evaluate with "
        f"`python -m workstation eval {written.category} --expert fewshot --shots 8`.\n"
    )
