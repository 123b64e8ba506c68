"""Import use case: a folder on disk -> products, images and ground-truth masks in the store.

Files are hashed and validated on a few threads (decoders and hashing release the GIL);
rows are written in batches, each batch one transaction, so a crash keeps every finished
batch and nothing of the one in flight. Importing the same folder twice adds nothing:
images are keyed by (product, sha256). A file that cannot be read is listed with its
reason and the rest of the batch goes on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workstation.core.errors import UserError
from workstation.core.imageio import ImageReadError, probe_image, read_mask_checked
from workstation.core.types import ImageRecord, Product
from workstation.datasets.coco_rle import segmentation_to_mask
from workstation.datasets.layouts import CocoMask, ImportItem, ProductPlan, Skipped, plan_import
from workstation.store.repository import Store
from workstation.store.rows import NewImage

Progress = Callable[[int, int], None]
BATCH_SIZE = 32


@dataclass(frozen=True)
class ProductImport:
    product: Product
    layout: str
    added: int
    existing: int
    masks: int


@dataclass(frozen=True)
class ImportReport:
    products: tuple[ProductImport, ...]
    failures: tuple[Skipped, ...]
    warnings: tuple[str, ...]
    cancelled: bool = False

    @property
    def added(self) -> int:
        return sum(p.added for p in self.products)

    @property
    def existing(self) -> int:
        return sum(p.existing for p in self.products)


@dataclass(frozen=True)
class _Prepared:
    entry: NewImage | None
    failures: tuple[Skipped, ...] = ()
    warning: str | None = None


def _load_mask(item: ImportItem, shape: tuple[int, int]) -> tuple[np.ndarray, str | None]:
    if isinstance(item.mask, CocoMask):
        if (item.mask.height, item.mask.width) != shape:
            raise ImageReadError(
                f"{item.path}: the annotation says {item.mask.width}x{item.mask.height} pixels "
                f"but the image is {shape[1]}x{shape[0]}"
            )
        mask = np.zeros(shape, dtype=np.uint8)
        for segmentation in item.mask.segmentations:
            try:
                mask |= segmentation_to_mask(segmentation, *shape)
            except (ValueError, KeyError, TypeError) as exc:
                raise ImageReadError(f"{item.path}: bad segmentation ({exc})") from exc
        return mask, None
    assert item.mask is not None
    return read_mask_checked(item.mask, expected_shape=shape)


def _prepare(item: ImportItem) -> _Prepared:
    """Hash + validate one image and read its mask; runs on a worker thread."""
    try:
        probed = probe_image(item.path)
    except UserError as exc:
        return _Prepared(None, (Skipped(str(item.path), str(exc)),))
    mask, warning, failures = None, None, ()
    if item.mask is not None:
        try:
            mask, warning = _load_mask(item, (probed.height, probed.width))
        except UserError as exc:
            # The image is still worth having; only its ground truth is unusable.
            mask_name = str(item.mask) if isinstance(item.mask, Path) else str(item.path)
            failures = (Skipped(mask_name, f"{exc} (image imported without its mask)"),)
    entry = NewImage(
        path=str(item.path.absolute()),
        sha256=probed.sha256,
        width=probed.width,
        height=probed.height,
        split=item.split,
        source_label=item.label,
        ground_truth_mask=mask,
    )
    return _Prepared(entry, failures, warning)


def _follow_move(store: Store, image: ImageRecord, entry: NewImage) -> None:
    """A known image found at a new place while its old file is gone: it was moved."""
    if image.path != entry.path and not Path(image.path).exists():
        store.update_image_path(image.id, entry.path)


def _batches(items: Sequence[ImportItem], size: int) -> Iterator[Sequence[ImportItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ensure_product(store: Store, plan: ProductPlan) -> Product:
    """Find or create the plan's product; a product file's fields fill in what it says."""
    meta = plan.meta
    product = store.find_product(plan.name)
    vocabulary = meta.defect_vocabulary
    if product is None:
        return store.create_product(
            plan.name,
            description=meta.description or "",
            normality_rules=meta.normality_rules or (),
            defect_vocabulary=vocabulary if vocabulary is not None else plan.labels,
        )
    description = product.description if meta.description is None else meta.description
    rules = product.normality_rules if meta.normality_rules is None else meta.normality_rules
    if vocabulary is None:  # keep the product's words, add labels seen in this folder
        vocabulary = tuple(dict.fromkeys((*product.defect_vocabulary, *plan.labels)))
    current = (product.description, product.normality_rules, product.defect_vocabulary)
    if (description, rules, vocabulary) == current:
        return product
    return store.update_product(
        product.id, description=description, normality_rules=rules, defect_vocabulary=vocabulary
    )


def import_directory(
    store: Store,
    root: Path | str,
    *,
    product: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import every product found under ``root``; see the module docstring."""
    plans = plan_import(root, product=product)
    total = sum(len(p.items) for p in plans)
    if total == 0:
        raise UserError(f"{root} holds no PNG, JPEG, BMP or TIFF images to import")
    workers = workers or min(4, os.cpu_count() or 1)
    done = 0
    results: list[ProductImport] = []
    failures: list[Skipped] = []
    warnings: list[str] = []
    cancelled = False
    if progress:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="import") as pool:
        for plan in plans:
            failures += plan.skipped
            warnings += plan.warnings
            record = ensure_product(store, plan)
            added = existing = masks = 0
            batches = list(_batches(plan.items, batch_size))
            # One batch of look-ahead: workers decode the next batch while this thread
            # writes the current one.
            pending = pool.map(_prepare, batches[0]) if batches else iter(())
            for index, batch in enumerate(batches):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                prepared = list(pending)
                if index + 1 < len(batches):
                    pending = pool.map(_prepare, batches[index + 1])
                entries = [p.entry for p in prepared if p.entry is not None]
                for p in prepared:
                    failures.extend(p.failures)
                    if p.warning:
                        warnings.append(p.warning)
                if entries:
                    for (image, created), entry in zip(
                        store.add_images(record.id, entries), entries, strict=True
                    ):
                        if created:
                            added += 1
                            masks += entry.ground_truth_mask is not None
                        else:
                            existing += 1
                            _follow_move(store, image, entry)
                done += len(batch)
                if progress:
                    progress(done, total)
            results.append(ProductImport(record, plan.layout, added, existing, masks))
            if cancelled:
                break
    return ImportReport(tuple(results), tuple(failures), tuple(warnings), cancelled)
