"""``iad-workstation inspect``: score a product's stored images, or image files given here.

``inspect --product NAME`` runs the product's active experts over every stored image not
yet predicted by that version (fitting them first if needed). ``inspect IMAGE... --product
NAME`` scores files outside the store with the product's calibrated experts and prints
score and verdict (``--explain`` adds the weight-free template explanation). A file that
cannot be read is listed with its reason and the others are still scored; the exit code
is 1 when any image could not be scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workstation.cli.storeargs import add_db_option, store_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="score a product's images with its calibrated experts",
        description="Without IMAGE arguments: predict every stored image of the product not "
        "yet predicted by its active expert version. With IMAGE arguments: score those files.",
    )
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE")
    parser.add_argument("--product", required=True, help="product name in the store")
    add_db_option(parser)
    parser.add_argument(
        "--refit", action="store_true", help="fit and calibrate a new expert version first"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda (default: settings)")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="add a template explanation for each image (with IMAGE)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workstation.cli.progress import staged_progress_bars
    from workstation.config import load_settings
    from workstation.device import resolve_device
    from workstation.store.repository import Store

    settings = load_settings()
    device = resolve_device(args.device or settings.device.preference)
    store = Store.open(store_path(args))
    try:
        if args.images:
            return _score_files(store, args, settings.experts, device)
        from workstation.services.triage import triage_product

        triage = triage_product(
            store,
            args.product,
            settings.experts,
            device=device,
            batch_size=args.batch_size,
            refit=args.refit,
            progress=staged_progress_bars(f"inspect {args.product}"),
        )
    finally:
        store.close()
    report = triage.inspection
    if args.json:
        print(
            json.dumps(
                report.__dict__ | {"drafted": triage.drafted, "queued": triage.queued}, indent=2
            )
        )
    else:
        print(f"{report.product}: {triage.summary()}; {report.skipped} already scored")
        for image_id, reason in report.failed:
            print(f"  image {image_id} skipped: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def _score_files(store: object, args: argparse.Namespace, settings: object, device: str) -> int:
    from workstation.cli.progress import progress_bar
    from workstation.core.errors import UserError
    from workstation.core.imageio import stored_size
    from workstation.services.inspect import load_active_pipeline
    from workstation.services.large_scoring import route, score_file

    product = store.get_product(args.product)  # type: ignore[attr-defined]
    version, pipeline = load_active_pipeline(
        store,
        product,
        settings,
        device=device,
        refit=args.refit,  # type: ignore[arg-type]
    )
    rows: list[dict[str, object]] = []
    failed: list[dict[str, object]] = []
    total = len(args.images)
    for number, path in enumerate(args.images, start=1):
        step = f"[{number}/{total}] {path}"
        try:  # the pixel limit is checked on the header, before anything is decoded
            width, height = stored_size(path)
            tiled = route(width, height, name=str(path)) == "tiled"
        except UserError as exc:  # one unreadable or refused file never stops the batch
            print(f"{step}: refused", file=sys.stderr, flush=True)
            failed.append({"image": str(path), "error": str(exc)})
            continue
        # Each item says it started: a large one takes a while, and the batch goes on.
        how = "scoring in tiles" if tiled else "scoring"
        print(f"{step}: {width}x{height} px, {how}", file=sys.stderr, flush=True)
        tiles = progress_bar(0, f"{path.name}: tiles") if tiled else None
        try:
            scored = score_file(store, path, pipeline, product, progress=tiles)  # type: ignore[arg-type]
        except UserError as exc:
            failed.append({"image": str(path), "error": str(exc)})
            continue
        result = scored.fused
        row: dict[str, object] = {
            "image": str(path),
            "score": round(result.score, 4),
            "verdict": "anomalous" if result.anomalous else "normal",
            "model_version": version.name,
        }
        if scored.tiles:
            row["tiles"] = scored.tiles
            row["regions"] = [list(region.bbox) for region in scored.regions]
        if args.explain:
            from workstation.explain.template import explain

            row["explanation"] = explain(result, product=product).to_dict()
        rows.append(row)
    code = 1 if failed else 0
    if args.json:
        print(json.dumps(rows + failed, indent=2))
        return code
    for row in rows:
        print(f"{row['image']}: {row['verdict']} (score {row['score']}, threshold 1.0)")
        if "regions" in row:
            print(f"  {row['tiles']} tiles; regions (x0, y0, x1, y1): {row['regions']}")
        if "explanation" in row:
            explanation = row["explanation"]
            print(f"  {explanation['description']}")  # type: ignore[index]
    if failed:
        print(f"{len(failed)} of {len(args.images)} image(s) not scored:", file=sys.stderr)
        for item in failed:
            print(f"  {item['error']}", file=sys.stderr)
    return code
