"""``iad-workstation bench gui``: how the review window feels, measured offscreen.

* image switch: from the key press (``next``) until the new image, its heatmap and its mask
  are painted, with read-ahead given the time an inspector spends on an image;
* stroke to committed: from the mouse release of a brush stroke until the mask revision is
  in the store;
* longest event-loop stall while the model lane runs expert inference (and the inspector
  keeps switching images): the largest gap between ticks of a 5 ms timer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TICK_MS = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gui", help="image switch, stroke commit and event-loop stall timings"
    )
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels (2048)")
    parser.add_argument("--images", type=int, default=12, help="images in the benchmark store (12)")
    parser.add_argument("--switches", type=int, default=40, help="image switches to time (40)")
    parser.add_argument("--strokes", type=int, default=15, help="brush strokes to time (15)")
    parser.add_argument(
        "--inference", type=int, default=6, help="expert predictions during the stall test"
    )
    parser.add_argument(
        "--large",
        type=int,
        default=8000,
        help="side of the large image opened and panned (8000; 0 skips)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.set_defaults(handler=run)


def pump_until(app: Any, predicate: Any, timeout_s: float) -> None:
    """Run the event loop until ``predicate()``; TimeoutError after ``timeout_s``."""
    from PySide6.QtCore import QEventLoop

    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark step did not finish in time")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def build_bench_store(folder: Path, *, size: int, count: int) -> Path:
    """Images with full-size heatmaps and masks, as a reviewed product would have."""
    import cv2

    from workstation.core.imageio import write_png
    from workstation.store.repository import Store

    rng = np.random.default_rng(0)
    db = folder / "bench.sqlite"
    with Store.open(db) as store:
        product = store.create_product("bench", defect_vocabulary=("scratch",))
        store.update_product(product.id, threshold=1.0)
        for i in range(count):
            image = np.full((size, size, 3), 140, np.uint8)
            image += rng.integers(0, 30, (size, size, 1), dtype=np.uint8)
            centre = (
                int(rng.integers(size // 4, 3 * size // 4)),
                int(rng.integers(size // 4, 3 * size // 4)),
            )
            cv2.circle(image, centre, size // 12, (60, 50, 50), -1)
            path = folder / f"bench_{i:03d}.png"
            write_png(path, image)
            record, _ = store.add_image(
                product.id,
                path=str(path),
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                width=size,
                height=size,
                split="train" if i == 0 else "test",
                source_label="good" if i == 0 else None,
            )
            heat = np.zeros((size, size), np.float32)
            cv2.circle(heat, centre, size // 10, 2.0, -1)
            heat = cv2.GaussianBlur(heat, (0, 0), size / 100)
            store.add_prediction(
                record.id,
                model_version="bench",
                score=float(heat.max()),
                anomalous=True,
                anomaly_map=heat,
            )
            mask = (heat >= 1.0).astype(np.uint8)
            store.add_mask_revision(record.id, mask, source="expert", author="bench")
    return db


def _large_image(size: int, folder: Path, wait_until: Any) -> dict[str, Any]:
    """Open one huge image (time to first paint) and pan across it at 1:1 and zoomed out."""
    from workstation.gui.app import build_workstation
    from workstation.gui.main_window import MainWindow

    sub = folder / "large"
    sub.mkdir()
    print(f"building one {size}x{size} image ...")
    db = build_bench_store(sub, size=size, count=1)
    ws = build_workstation(db)
    start = time.perf_counter()
    window = MainWindow(ws)
    window.resize(1600, 1000)
    window.show()
    wait_until(lambda: window.controller.current is not None, 300)
    canvas = window.canvas
    canvas.viewport().repaint()
    open_s = time.perf_counter() - start
    frames: dict[str, list[float]] = {"fit": [], "one_to_one": []}
    for mode in frames:
        if mode == "one_to_one":
            canvas.one_to_one()
        bar = canvas.horizontalScrollBar()
        for step in range(30):
            bar.setValue(bar.minimum() + (bar.maximum() - bar.minimum()) * step // 29)
            t0 = time.perf_counter()
            canvas.viewport().repaint()
            frames[mode].append((time.perf_counter() - t0) * 1000)
    window.close()
    ws.close()
    return {
        "size": size,
        "open_s": open_s,
        "pan_frame_ms_fit_p95": _percentile(frames["fit"], 95),
        "pan_frame_ms_1to1_p95": _percentile(frames["one_to_one"], 95),
    }


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    from PySide6.QtTest import QTest

    from workstation.gui.app import build_workstation
    from workstation.gui.launch import application
    from workstation.gui.main_window import MainWindow

    app = application()

    def spin(ms: float) -> None:
        end = time.perf_counter() + ms / 1000
        while time.perf_counter() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)

    def wait_until(predicate: Any, timeout_s: float = 60.0) -> None:
        pump_until(app, predicate, timeout_s)

    with tempfile.TemporaryDirectory(prefix="iad-bench-gui-") as tmp:
        print(f"building {args.images} images of {args.size}x{args.size} ...")
        db = build_bench_store(Path(tmp), size=args.size, count=args.images)
        ws = build_workstation(db)
        window = MainWindow(ws)
        window.resize(1600, 1000)
        window.show()
        controller, canvas = window.controller, window.canvas
        wait_until(lambda: controller.current is not None)
        wait_until(lambda: not ws.io_lane.busy and not ws.model_lane.busy)

        # -- image switch -------------------------------------------------------------------
        switch_ms: list[float] = []
        direction = 1
        for _ in range(args.switches):
            if not 0 <= controller.current_row + direction < window.list_model.rowCount():
                direction = -direction
            wait_until(lambda: not ws.io_lane.busy)  # the inspector looked at the image a while
            before = controller.current.content.image_id
            start = time.perf_counter()
            controller.select_row(controller.current_row + direction)
            wait_until(lambda b=before: controller.current.content.image_id != b)
            canvas.viewport().repaint()
            switch_ms.append((time.perf_counter() - start) * 1000)

        # -- stroke to committed ------------------------------------------------------------------
        commit_ms: list[float] = []
        committed: list[float] = []
        controller.committed.connect(
            lambda what, _id: committed.append(time.perf_counter()) if what == "mask" else None
        )
        window.set_tool("brush")
        viewport = canvas.viewport()
        for i in range(args.strokes):
            # in image proportions, so a small --size still strokes inside the image
            y = args.size * (0.1 + 0.2 * i / args.strokes)
            points = [canvas.mapFromScene(args.size * (0.2 + 0.02 * k), y) for k in range(8)]
            QTest.mousePress(
                viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0]
            )
            for p in points[1:]:
                QTest.mouseMove(viewport, p)
            count = len(committed)
            start = time.perf_counter()
            QTest.mouseRelease(
                viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1]
            )
            wait_until(lambda c=count: len(committed) > c)
            commit_ms.append((committed[-1] - start) * 1000)

        # -- event-loop stall during inference ---------------------------------------------
        clock = QElapsedTimer()
        clock.start()

        def longest_stall(work_done: Any, keep_busy: Any) -> tuple[float, int]:
            """Longest gap between TICK_MS timer ticks (minus the tick) until work_done()."""
            gaps: list[float] = []
            last = [clock.nsecsElapsed()]

            def tick() -> None:
                now = clock.nsecsElapsed()
                gaps.append((now - last[0]) / 1e6)
                last[0] = now

            timer = QTimer()
            timer.setInterval(TICK_MS)
            timer.timeout.connect(tick)
            timer.start()
            while not work_done():
                keep_busy()
            timer.stop()
            return (max(gaps) - TICK_MS if gaps else float("nan")), len(gaps)

        # The app loads the model libraries on the lane at start-up (warm_up_model_lane);
        # that one-time load is timed apart from the steady-state stall during inference.
        ws.warm_up_model_lane()
        warm_up_stall, _ = longest_stall(lambda: not ws.model_lane.busy, lambda: spin(50))

        def inference(progress: Any, cancel: Any) -> int:
            from workstation.core.imageio import read_image
            from workstation.experts.base import build_backbone
            from workstation.experts.fewshot import FewShotExpert

            records = ws.store.list_images(controller.service.product.id)
            images = [read_image(r.path) for r in records[:3]]
            expert = FewShotExpert(build_backbone("filterbank"))
            expert.fit(images[:1])
            for i in range(args.inference):
                cancel.raise_if_cancelled()
                expert.predict([images[1 + i % 2]])
                progress(i + 1, args.inference, "")
            return args.inference

        def browse() -> None:
            wait_until(lambda: not ws.io_lane.busy)
            row = controller.current_row
            controller.select_row(row + 1 if row + 1 < window.list_model.rowCount() else 0)
            spin(300)

        done: list[int] = []
        ws.model_lane.submit(
            inference,
            channel="bench",
            on_result=done.append,
            on_error=lambda e: done.append(-1) or print(e),
        )
        stall, ticks = longest_stall(lambda: bool(done), browse)

        window.close()
        ws.close()
        large = _large_image(args.large, Path(tmp), wait_until) if args.large else {}

    results = {
        "large_image": large,
        "image_switch_ms": {
            "p50": _percentile(switch_ms, 50),
            "p95": _percentile(switch_ms, 95),
            "n": len(switch_ms),
        },
        "stroke_to_committed_ms": {
            "p50": _percentile(commit_ms, 50),
            "p95": _percentile(commit_ms, 95),
            "n": len(commit_ms),
        },
        "event_loop_stall_ms": {
            "max": stall,
            "ticks": ticks,
            "inference_ok": done == [args.inference],
            "model_libraries_first_load": warm_up_stall,
        },
        "image_size": args.size,
        "mean_switch_ms": statistics.fmean(switch_ms) if switch_ms else float("nan"),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
