"""Export a product: MVTec layout, COCO with RLE masks, or JSON-lines chat pairs.

What gets exported is the *final* state of each image:

* label: the inspector's decision when there is one (``normal`` -> ``good``; ``anomalous``
  -> the defect type of the newest explanation, else the imported defect label, else
  ``defect``), otherwise the label the image was imported with;
* mask: the latest accepted mask, i.e. the newest inspector revision if any, else the
  ground truth; good images get no mask.

Image files are copied byte for byte, so importing an export gives the same content
hashes, splits, labels and masks (the round trip the tests check). Unlabeled images go
to an ``unlabeled/`` folder next to ``train/`` and ``test/`` (the importer knows it).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from workstation.core.errors import UserError
from workstation.core.imageio import encode_png, write_bytes_atomic
from workstation.core.tempfiles import create_temp
from workstation.core.types import NORMAL_LABEL, Explanation, ImageRecord, Product
from workstation.core.untrusted import inside
from workstation.datasets import coco_rle
from workstation.datasets.layouts import COCO_FILE, UNLABELED_DIR
from workstation.paths import expand_user
from workstation.store.repository import Store

ExportFormat = Literal["mvtec", "coco", "jsonl"]
EXPORT_FORMATS: tuple[str, ...] = ("mvtec", "coco", "jsonl")
ACCEPTED_MASK_SOURCES = ("inspector", "ground_truth")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FinalImage:
    """An image as it should be exported."""

    image: ImageRecord
    split: str
    label: str | None
    mask: np.ndarray | None


@dataclass(frozen=True)
class ExportReport:
    path: Path
    images: int
    masks: int


def _final_label(store: Store, image: ImageRecord) -> str | None:
    review = _latest_decision(store, image.id)
    if review is None:
        return image.source_label
    verdict = review
    if verdict == "accepted":
        prediction = store.latest_prediction(image.id)
        if prediction is None:
            return image.source_label
        verdict = "anomalous" if prediction.anomalous else "normal"
    if verdict == "normal":
        return NORMAL_LABEL
    explanation = store.latest_explanation(image.id)
    if explanation is not None and explanation.explanation.defect_type:
        return explanation.explanation.defect_type
    if image.source_label and image.source_label != NORMAL_LABEL:
        return image.source_label
    return "defect"


def _latest_decision(store: Store, image_id: int) -> str | None:
    """Newest decisive review verdict (a skip decides nothing)."""
    for review in reversed(store.review_history(image_id)):
        if review.verdict != "skipped":
            return review.verdict
    return None


def final_images(store: Store, product: Product) -> Iterator[FinalImage]:
    for image in store.list_images(product.id):
        label = _final_label(store, image)
        split = image.split
        if split == "unlabeled" and label is not None:
            split = "test"
        mask = None
        if label not in (None, NORMAL_LABEL):
            revision = store.latest_mask_revision(image.id, sources=("inspector",))
            revision = revision or store.latest_mask_revision(image.id, sources=("ground_truth",))
            if revision is not None:
                mask = store.load_mask(revision)
        yield FinalImage(image, split, label, mask)


def _unique_name(used: set[str], folder: str, image: ImageRecord) -> str:
    """The original file name, with the hash appended if two images would collide."""
    name = image.name
    key = f"{folder}/{name}".lower()
    if key in used:
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem}_{image.sha256[:8]}{dot}{suffix}" if dot else f"{name}_{image.sha256[:8]}"
        key = f"{folder}/{name}".lower()
    used.add(key)
    return name


def _folder(item: FinalImage) -> tuple[str, ...]:
    """Where an image goes: its split and label (names checked again by :func:`inside`,
    since labels and product names may have come from another station's bundle)."""
    return (UNLABELED_DIR,) if item.label is None else (item.split, item.label)


def _copy(source: str, target: Path) -> None:
    if not Path(source).is_file():
        raise UserError(f"{source} is gone from disk; the store only keeps its path and hash")
    fd, temp = create_temp(target.parent, target.suffix)  # O_EXCL: never a planted link
    os.close(fd)
    try:
        shutil.copyfile(source, temp)
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _empty_target(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} already exists and is not empty; choose a new output folder")


def _product_info(product: Product) -> dict[str, object]:
    return {
        "name": product.name,
        "description": product.description,
        "normality_rules": list(product.normality_rules),
        "defect_vocabulary": list(product.defect_vocabulary),
    }


def export_mvtec(
    store: Store, product: Product, out: Path, progress: Progress | None = None
) -> ExportReport:
    root = inside(out, product.name)
    _empty_target(root)
    images = list(final_images(store, product))
    used: set[str] = set()
    masks = 0
    for done, item in enumerate(images, start=1):
        folder = _folder(item)
        name = _unique_name(used, "/".join(folder), item.image)
        _copy(item.image.path, inside(root, *folder, name))
        if item.mask is not None:
            stem = name.rsplit(".", 1)[0]
            mask_path = inside(root, "ground_truth", str(item.label), f"{stem}_mask.png")
            write_bytes_atomic(mask_path, encode_png(item.mask * np.uint8(255)))
            masks += 1
        if progress:
            progress(done, len(images))
    info = json.dumps(_product_info(product), indent=2, ensure_ascii=False)
    write_bytes_atomic(root / "product.json", info.encode("utf-8"))
    return ExportReport(root, len(images), masks)


def export_coco(
    store: Store, product: Product, out: Path, progress: Progress | None = None
) -> ExportReport:
    _empty_target(out)
    images = list(final_images(store, product))
    labels = sorted({i.label for i in images if i.label not in (None, NORMAL_LABEL)})
    names = list(dict.fromkeys([*product.defect_vocabulary, *labels]))
    category_ids = {name: index for index, name in enumerate(names, start=1)}
    coco_images, annotations = [], []
    used: set[str] = set()
    for done, item in enumerate(images, start=1):
        folder = _folder(item)
        file_name = "/".join(("images", *folder, _unique_name(used, "/".join(folder), item.image)))
        _copy(item.image.path, inside(out, *file_name.split("/")))
        coco_images.append(
            {
                "id": item.image.id,
                "file_name": file_name,
                "width": item.image.width,
                "height": item.image.height,
                "iad_split": item.split,
                "iad_label": item.label,
                "sha256": item.image.sha256,
            }
        )
        if item.mask is not None and item.label is not None:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": item.image.id,
                    "category_id": category_ids[item.label],
                    "segmentation": coco_rle.encode(item.mask),
                    "area": coco_rle.area(item.mask),
                    "bbox": coco_rle.bbox(item.mask),
                    "iscrowd": 0,
                }
            )
        if progress:
            progress(done, len(images))
    document = {
        "info": {
            "description": f"IAD Workstation export of {product.name}",
            "iad_product": _product_info(product),
        },
        "images": coco_images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": n, "supercategory": "defect"} for n, i in category_ids.items()
        ],
    }
    text = json.dumps(document, ensure_ascii=False)
    write_bytes_atomic(out / COCO_FILE, text.encode("utf-8"))
    return ExportReport(out, len(images), len(annotations))


def chat_prompt(product: Product) -> str:
    """The user turn of a fine-tuning pair: the product context and the expected answer form."""
    lines = [f"You are inspecting a {product.name}."]
    if product.description:
        lines.append(product.description)
    if product.normality_rules:
        lines.append("A normal part: " + " ".join(product.normality_rules))
    if product.defect_vocabulary:
        lines.append("Known defect types: " + ", ".join(product.defect_vocabulary) + ".")
    lines.append(
        "Is this part normal or anomalous? Answer in JSON with verdict, defect_type, "
        "location, severity and description."
    )
    return "\n".join(lines)


def _final_explanation(store: Store, image: ImageRecord) -> Explanation | None:
    """The explanation a person stands behind: their own edit, or the one they accepted."""
    decision = _latest_decision(store, image.id)
    inspector = store.latest_explanation(image.id, sources=("inspector",))
    if inspector is not None:
        return inspector.explanation
    if decision == "accepted":
        latest = store.latest_explanation(image.id)
        return latest.explanation if latest else None
    if decision == "normal":
        return Explanation(verdict="normal")
    return None


def export_jsonl(
    store: Store, product: Product, out: Path, progress: Progress | None = None
) -> ExportReport:
    target = out if out.suffix == ".jsonl" else inside(out, f"{product.name}.jsonl")
    if target.exists():
        raise UserError(f"{target} already exists; choose a new output file")
    prompt = chat_prompt(product)
    lines: list[str] = []
    images = store.list_images(product.id)
    for done, image in enumerate(images, start=1):
        explanation = _final_explanation(store, image)
        if explanation is not None:
            answer = json.dumps(explanation.to_dict(), ensure_ascii=False)
            pair = {
                "image": image.path,
                "sha256": image.sha256,
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ],
            }
            lines.append(json.dumps(pair, ensure_ascii=False))
        if progress:
            progress(done, len(images))
    text = "".join(line + "\n" for line in lines)
    write_bytes_atomic(target, text.encode("utf-8"))
    return ExportReport(target, len(lines), 0)


_EXPORTERS = {"mvtec": export_mvtec, "coco": export_coco, "jsonl": export_jsonl}


def export_product(
    store: Store,
    product: str | int,
    out: Path | str,
    *,
    format: ExportFormat,
    progress: Progress | None = None,
) -> ExportReport:
    """Export one product in ``format`` under ``out`` (see the module docstring)."""
    if format not in _EXPORTERS:
        raise UserError(
            f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    record = store.get_product(product)
    return _EXPORTERS[format](store, record, expand_user(out), progress)
