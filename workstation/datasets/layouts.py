"""Recognising a folder of inspection images and planning what to import from it.

Known layouts (checked in this order):

* ``coco``: ``annotations.json`` as written by ``export --format coco`` (any COCO file
  with ``images`` works; masks come from RLE or polygon segmentations).
* ``mvtec``: a category folder with ``train/<label>/`` and/or ``test/<label>/`` and
  ``ground_truth/<label>/<stem>_mask.png``; a folder of such categories imports one
  product per category. An extra ``unlabeled/`` folder holds unlabeled images.
* ``folder`` (anomalib Folder): ``normal/`` (or ``good``), ``abnormal/`` (or ``anomalous``,
  ``defect``, ``bad``) optionally split by defect type into subfolders, ``normal_test/``,
  and masks in ``mask/`` (or ``masks``, ``ground_truth``) mirroring the abnormal folder.
* ``flat``: image files directly in the folder, imported as unlabeled.

A category folder may hold ``product.toml`` or ``product.json`` with ``name``,
``description``, ``normality_rules`` and ``defect_vocabulary``.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from workstation.core.errors import UserError
from workstation.core.imageio import is_image_file
from workstation.core.types import NORMAL_LABEL, Split
from workstation.paths import expand_user

LayoutKind = Literal["mvtec", "folder", "flat", "coco"]
NORMAL_DIRS = ("normal", "good", "ok")
ABNORMAL_DIRS = ("abnormal", "anomalous", "defect", "defective", "bad", "ng")
MASK_DIRS = ("mask", "masks", "ground_truth", "gt")
NORMAL_TEST_DIRS = ("normal_test",)
UNLABELED_DIR = "unlabeled"
COCO_FILE = "annotations.json"
PRODUCT_FILES = ("product.toml", "product.json")
MASK_SUFFIXES = ("_mask", "")

EXPECTED_LAYOUTS = (
    "MVTec AD (<category>/train/good/, test/<defect>/, ground_truth/<defect>/<stem>_mask.png), "
    "anomalib Folder (normal/ and abnormal/, optional mask/), "
    "COCO (annotations.json with images), "
    "or a flat folder of PNG, JPEG, BMP or TIFF images"
)


@dataclass(frozen=True)
class CocoMask:
    """Segmentations of one image from a COCO file, decoded when the image is imported."""

    segmentations: tuple[Any, ...]
    height: int
    width: int


@dataclass(frozen=True)
class ImportItem:
    path: Path
    split: Split
    label: str | None
    mask: Path | CocoMask | None = None


@dataclass(frozen=True)
class ProductMeta:
    name: str | None = None
    description: str | None = None
    normality_rules: tuple[str, ...] | None = None
    defect_vocabulary: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Skipped:
    """A file that was not imported: one found unreadable while planning (a broken link)
    or while importing (a damaged image, a mask of the wrong size)."""

    path: str
    reason: str
    """The whole one-line message, naming the file; what the CLI and the GUI show."""


@dataclass(frozen=True)
class ProductPlan:
    name: str
    layout: LayoutKind
    root: Path
    items: tuple[ImportItem, ...]
    meta: ProductMeta = field(default_factory=ProductMeta)
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        found = {i.label for i in self.items if i.label and i.label != NORMAL_LABEL}
        return tuple(sorted(found))


def _images_in(folder: Path, skipped: list[Skipped] | None = None) -> list[Path]:
    """Image files in ``folder``; symbolic links that lead nowhere go to ``skipped``."""
    if not folder.is_dir():
        return []
    images = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_image_file(path):
            images.append(path)
        elif skipped is not None and path.is_symlink() and not path.exists():
            skipped.append(Skipped(str(path), f"{path}: {_unreachable_link(path)}"))
    return images


def _unreachable_link(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "skipped: a symbolic link that loops back on itself"
    return f"skipped: a symbolic link to {os.readlink(path)}, which does not exist"


def _product_name(name: str | None, meta: ProductMeta, folder: Path) -> str:
    """--product, else the product file's name, else the folder's own name (resolved,
    so ``import .`` and ``import ..`` name the product after the real folder)."""
    found = name or meta.name or folder.resolve().name
    if not found:
        raise UserError(f"{folder} has no name to give the product; pass --product NAME")
    return found


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find_child(folder: Path, names: tuple[str, ...]) -> Path | None:
    lookup = {p.name.lower(): p for p in _subdirs(folder)}
    for name in names:
        if name in lookup:
            return lookup[name]
    return None


def _find_mask(folder: Path | None, stem: str) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    for suffix in MASK_SUFFIXES:
        for candidate in sorted(folder.glob(f"{glob.escape(stem)}{suffix}.*")):
            if is_image_file(candidate):
                return candidate
    return None


def _strings(data: dict[str, Any], key: str, path: Path) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{path}: {key} must be a list of strings")
    return tuple(value)


def read_product_meta(folder: Path) -> ProductMeta:
    for name in PRODUCT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: cannot read the product description ({e})") from e
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a table with name, description, ...")
        name_value = data.get("name")
        description = data.get("description")
        return ProductMeta(
            name=str(name_value) if name_value else None,
            description=None if description is None else str(description),
            normality_rules=_strings(data, "normality_rules", path),
            defect_vocabulary=_strings(data, "defect_vocabulary", path),
        )
    return ProductMeta()


def is_mvtec_category(folder: Path) -> bool:
    return any(_subdirs(folder / part) for part in ("train", "test"))


@dataclass(frozen=True)
class MVTecSplits:
    """What a category folder's ``train/`` and ``test/`` hold, as the one MVTec reader
    that import, ``eval`` and the benchmarks share."""

    items: tuple[ImportItem, ...]
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...]
    """Defect folders with images that have no mask."""


def read_mvtec_splits(folder: Path) -> MVTecSplits:
    """Every image of ``train/<label>/`` and ``test/<label>/`` with its mask from
    ``ground_truth/<label>/`` (normal images get none)."""
    items: list[ImportItem] = []
    skipped: list[Skipped] = []
    warnings: list[str] = []
    for split in ("train", "test"):
        for label_dir in _subdirs(folder / split):
            label = label_dir.name
            mask_dir = folder / "ground_truth" / label
            unmasked = []
            for image in _images_in(label_dir, skipped):
                mask = None if label == NORMAL_LABEL else _find_mask(mask_dir, image.stem)
                if label != NORMAL_LABEL and mask is None:
                    unmasked.append(image.name)
                items.append(ImportItem(image, split, label, mask))
            if unmasked:
                warnings.append(_no_mask_warning(label_dir, mask_dir, unmasked))
    return MVTecSplits(tuple(items), tuple(skipped), tuple(warnings))


def plan_mvtec(folder: Path, name: str | None = None) -> ProductPlan:
    splits = read_mvtec_splits(folder)
    skipped = list(splits.skipped)
    unlabeled = [
        ImportItem(p, "unlabeled", None) for p in _images_in(folder / UNLABELED_DIR, skipped)
    ]
    meta = read_product_meta(folder)
    return ProductPlan(
        _product_name(name, meta, folder),
        "mvtec",
        folder,
        splits.items + tuple(unlabeled),
        meta,
        tuple(skipped),
        splits.warnings,
    )


def _no_mask_warning(label_dir: Path, mask_dir: Path, names: list[str]) -> str:
    listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"{label_dir}: {len(names)} defect image(s) have no mask in {mask_dir} ({listed}); "
        "they are imported without ground truth, so pixel metrics skip them"
    )


def plan_folder(folder: Path, name: str | None = None) -> ProductPlan:
    items: list[ImportItem] = []
    skipped: list[Skipped] = []
    normal = _find_child(folder, NORMAL_DIRS)
    items += [
        ImportItem(p, "train", NORMAL_LABEL) for p in _images_in(normal or Path(), skipped)
    ]
    normal_test = _find_child(folder, NORMAL_TEST_DIRS)
    items += [
        ImportItem(p, "test", NORMAL_LABEL) for p in _images_in(normal_test or Path(), skipped)
    ]
    abnormal = _find_child(folder, ABNORMAL_DIRS)
    masks = _find_child(folder, MASK_DIRS)
    if abnormal is not None:
        groups = [(abnormal, abnormal.name, masks)]
        for sub in _subdirs(abnormal):
            groups.append((sub, sub.name, masks / sub.name if masks else None))
        for images_dir, label, mask_dir in groups:
            for image in _images_in(images_dir, skipped):
                mask = _find_mask(mask_dir, image.stem)
                items.append(ImportItem(image, "test", label, mask))
    meta = read_product_meta(folder)
    return ProductPlan(
        _product_name(name, meta, folder), "folder", folder, tuple(items), meta, tuple(skipped)
    )


def plan_flat(folder: Path, name: str | None = None) -> ProductPlan:
    skipped: list[Skipped] = []
    items = tuple(ImportItem(p, "unlabeled", None) for p in _images_in(folder, skipped))
    meta = read_product_meta(folder)
    return ProductPlan(
        _product_name(name, meta, folder), "flat", folder, items, meta, tuple(skipped)
    )


def plan_coco(folder: Path, name: str | None = None) -> ProductPlan:
    path = folder / COCO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        categories = {c["id"]: c["name"] for c in data.get("categories", [])}
        by_image: dict[int, list[dict[str, Any]]] = {}
        for annotation in data.get("annotations", []):
            by_image.setdefault(annotation["image_id"], []).append(annotation)
        items: list[ImportItem] = []
        for image in data["images"]:
            annotations = by_image.get(image["id"], [])
            label = image.get("iad_label")
            if "iad_label" not in image:
                label = categories.get(annotations[0]["category_id"]) if annotations else None
            split = image.get("iad_split") or ("test" if label else "unlabeled")
            mask = None
            if annotations:
                segmentations = tuple(a["segmentation"] for a in annotations)
                mask = CocoMask(segmentations, int(image["height"]), int(image["width"]))
            items.append(ImportItem(folder / image["file_name"], split, label, mask))
        product = data.get("info", {}).get("iad_product", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a usable COCO file ({exc})") from exc
    meta = ProductMeta(
        name=product.get("name"),
        description=product.get("description"),
        normality_rules=tuple(product["normality_rules"]) if "normality_rules" in product else None,
        defect_vocabulary=(
            tuple(product["defect_vocabulary"]) if "defect_vocabulary" in product else None
        ),
    )
    return ProductPlan(_product_name(name, meta, folder), "coco", folder, tuple(items), meta)


def plan_import(root: Path | str, *, product: str | None = None) -> list[ProductPlan]:
    """Detect the layout of ``root`` and list what to import, one plan per product."""
    root = expand_user(root)
    if not root.exists():
        raise UserError(f"{root} does not exist")
    if not root.is_dir():
        raise UserError(f"{root} is a file; give the folder that holds the images")
    if (root / COCO_FILE).is_file():
        return [plan_coco(root, product)]
    if is_mvtec_category(root):
        return [plan_mvtec(root, product)]
    categories = [d for d in _subdirs(root) if is_mvtec_category(d)]
    if categories:
        if product is not None and len(categories) > 1:
            names = ", ".join(d.name for d in categories)
            raise UserError(
                f"{root} holds {len(categories)} MVTec categories ({names}); --product names "
                "one product, so import one category folder at a time or leave --product out"
            )
        return [plan_mvtec(d, product) for d in categories]
    if _find_child(root, NORMAL_DIRS) or _find_child(root, ABNORMAL_DIRS):
        return [plan_folder(root, product)]
    if _images_in(root):
        return [plan_flat(root, product)]
    raise UserError(f"{root} is not a known dataset layout. Expected {EXPECTED_LAYOUTS}.")
