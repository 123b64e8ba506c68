"""``iad-workstation demo``: generate the built-in demo product, import it, open the GUI."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from workstation.cli.storeargs import add_db_option, store_path
from workstation.paths import demo_db_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="open the built-in demo (synthetic metal plates, no download)",
        description="Create or reuse the demo store in the user data directory, generate "
        "the synthetic demo images, import them and open the review window.",
    )
    parser.add_argument("--headless", action="store_true", help="no window; print a summary")
    parser.add_argument(
        "--regenerate", action="store_true", help="delete the demo images and store first"
    )
    parser.add_argument("--size", type=int, default=256, help="image size in pixels (256)")
    add_db_option(parser)
    parser.set_defaults(handler=run, default_store=demo_db_path)


def demo_data_dir() -> Path:
    return demo_db_path().parent / "data"


def _remove_store(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(db.parent / f"{db.stem}.blobs", ignore_errors=True)


def prepare_demo(db: Path, *, size: int = 256, regenerate: bool = False) -> str:
    """Make sure the demo images exist and are imported into ``db``; return the product name."""
    from workstation.cli.progress import progress_bar, staged_progress_bars
    from workstation.config import load_settings
    from workstation.core.errors import UserError
    from workstation.demo.generator import PRODUCT_NAME, DemoSpec, generate
    from workstation.demo.shipped import install_demo_model
    from workstation.device import resolve_device
    from workstation.services.importing import import_directory
    from workstation.services.triage import triage_product
    from workstation.store.repository import Store

    if size < 64 or size > 2048:
        raise UserError("--size must be between 64 and 2048 pixels")
    data = demo_data_dir() / f"{size}px"
    if regenerate:
        shutil.rmtree(data, ignore_errors=True)
        if db == demo_db_path():  # never delete a store the user pointed us at
            _remove_store(db)
    root = data / PRODUCT_NAME
    if not (root / "product.json").is_file():  # written last: its presence means complete
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating demo images in {root}")
        generate(data, DemoSpec(size=size))
    settings = load_settings()
    with Store.open(db) as store:
        report = import_directory(store, root, progress=progress_bar(0, "importing demo"))
        for failure in report.failures:
            print(f"warning: {failure.reason}")
        shipped = install_demo_model(store, store.get_product(PRODUCT_NAME), size=size)
        if shipped is not None:
            print(f"installed the demo's self-taught model as {shipped.name}")
        triage = triage_product(
            store,
            PRODUCT_NAME,
            settings.experts,
            device=resolve_device(settings.device.preference),
            progress=staged_progress_bars("demo"),
        )
        print(triage.summary())
    return PRODUCT_NAME


def print_summary(db: Path, product: str) -> None:
    import numpy as np

    from workstation.core.metrics import auroc
    from workstation.store.repository import Store

    with Store.open(db) as store:
        record = store.get_product(product)
        counts = store.split_label_counts(record.id)
        images = store.list_images(record.id)
        masks = sum(1 for image in images if store.latest_mask_revision(image.id) is not None)
        labels: list[bool] = []
        scores: list[float] = []
        for image in images:
            prediction = store.latest_prediction(image.id)
            if image.split == "test" and prediction is not None:
                labels.append(not image.is_labeled_normal)
                scores.append(prediction.score)
    print(f"demo store: {db}")
    print(f"product: {record.name} — {record.description}")
    for (split, label), count in counts.items():
        print(f"  {split:<10} {label or '(unlabeled)':<18} {count:>4}")
    print(f"  total {sum(counts.values())} images, {masks} with ground-truth masks")
    if len(set(labels)) == 2:
        truth, values = np.array(labels), np.array(scores)
        flagged = values >= 1.0
        print(
            f"  experts on the test split: image AUROC {auroc(truth, values):.3f} over "
            f"{truth.size} images; above the threshold: {int(flagged[truth].sum())} of "
            f"{int(truth.sum())} defects, {int(flagged[~truth].sum())} of "
            f"{int((~truth).sum())} normals"
        )


def run(args: argparse.Namespace) -> int:
    db = store_path(args)
    product = prepare_demo(db, size=args.size, regenerate=args.regenerate)
    if args.headless:
        print_summary(db, product)
        return 0
    from workstation.gui.launch import launch_gui

    return int(launch_gui(db=db, product=product) or 0)
