"""``iad-workstation bench onboard``: a product onboarded through the wizard, timed.

What an engineer waits for: from "Next" on the images page until the review list shows
the first image, with ``--images`` gray normals of ``--width`` x ``--height`` (default
40 of 1240 x 500, a ball-screw camera frame). The images are the ``--source`` folder's
(e.g. ``bsdata/ball_screw_drive/train/good``) or the demo's plates, converted to gray and
resized. Also reported: each phase's share (from the wizard's own progress lines) and the
longest time the page went without a new progress line, the "is it stuck?" number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "onboard", help="onboarding through the wizard to the first review, timed"
    )
    parser.add_argument("--images", type=int, default=40, help="normal images (40)")
    parser.add_argument("--width", type=int, default=1240, help="image width (1240)")
    parser.add_argument("--height", type=int, default=500, help="image height (500)")
    parser.add_argument(
        "--source", type=Path, help="folder of images to convert (default: the demo's plates)"
    )
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.set_defaults(handler=run)


def make_shots(
    folder: Path, *, count: int, width: int, height: int, source: Path | None
) -> list[Path]:
    """``count`` gray PNGs of width x height from ``source``'s images (cycled if fewer)."""
    import cv2

    from workstation.core.errors import UserError
    from workstation.core.imageio import is_image_file, read_image, write_png

    if count < 1 or width < 32 or height < 32:
        raise UserError("--images must be at least 1 and the size at least 32x32")
    if source is None:
        from workstation.demo.generator import DemoSpec, generate

        summary = generate(folder / "demo", DemoSpec(size=256, test_good=0, per_defect=0))
        source = summary.root / "train" / "good"
    if not source.is_dir():
        raise UserError(f"--source {source} is not a folder")
    files = sorted(p for p in source.rglob("*") if is_image_file(p))
    if not files:
        raise UserError(f"--source {source} holds no images")
    out = []
    for i in range(count):
        gray = cv2.cvtColor(read_image(files[i % len(files)]), cv2.COLOR_RGB2GRAY)
        path = folder / f"normal_{i:03d}.png"
        write_png(path, cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA))
        out.append(path)
    return out


def phase_times(lines: list[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds per phase: from a phase's first line to the next phase's first line."""
    firsts: list[tuple[float, str]] = []
    for t, line in lines:
        phase = line.split(" · ")[0].rstrip("…").rsplit(" ", 3)[0] if "/" in line else line
        if not firsts or firsts[-1][1] != phase:
            firsts.append((t, phase))
    bounds = [t for t, _ in firsts[1:]] + [end]
    return {phase: round(stop - t, 2) for (t, phase), stop in zip(firsts, bounds, strict=True)}


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from workstation.bench.gui import pump_until
    from workstation.gui.app import build_workstation
    from workstation.gui.launch import application
    from workstation.gui.main_window import MainWindow
    from workstation.gui.onboarding import OnboardingWizard

    app = application()

    def wait_until(predicate: Any, timeout_s: float) -> None:
        pump_until(app, predicate, timeout_s)

    with tempfile.TemporaryDirectory(prefix="iad-bench-onboard-") as tmp:
        folder = Path(tmp)
        shots = make_shots(
            folder, count=args.images, width=args.width, height=args.height, source=args.source
        )
        ws = build_workstation(folder / "bench.sqlite")
        window = MainWindow(ws)
        window.resize(1366, 768)
        window.show()
        wizard = OnboardingWizard(ws, window)
        wizard.show()
        wizard.product_page.name.setText("bench-onboard")
        wizard.next()
        wizard.next()
        wizard.images_page.normals.add(shots)
        page = wizard.run_page
        lines: list[tuple[float, str]] = []
        shown = page._progress

        def record(done: int, total: int, message: str) -> None:
            lines.append((time.perf_counter(), message))
            shown(done, total, message)

        page._progress = record  # type: ignore[method-assign]
        start = time.perf_counter()
        wizard.next()
        wait_until(lambda: not page.running, 1800)
        fitted = time.perf_counter()
        if page.outcome is None:
            window.close()
            ws.close()
            raise SystemExit(f"onboarding failed: {page.status.text()}")
        wizard.accept()
        window.open_product("bench-onboard")
        wait_until(lambda: window.controller.current is not None, 120)
        reviewing = time.perf_counter()
        stamps = [start] + [t for t, _ in lines] + [fitted]
        results = {
            "images": args.images,
            "size": f"{args.width}x{args.height}",
            "source": str(args.source or "demo plates"),
            "to_first_review_s": round(reviewing - start, 2),
            "wizard_fit_s": round(fitted - start, 2),
            "longest_silence_s": round(max(b - a for a, b in itertools.pairwise(stamps)), 2),
            "progress_lines": len(lines),
            "phases_s": phase_times([(t - start, m) for t, m in lines], fitted - start),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "cpus": os.cpu_count(),
        }
        window.close()
        ws.close()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
