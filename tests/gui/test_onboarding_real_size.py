"""Onboarding at a real camera size: 40 gray 500x1240 normals, through the wizard, to review.

The small-image wizard test never showed the real failure (the page sat on "Starting…" for
minutes); this one records every status line the page shows while the experts fit, and
checks each phase reported itself with a time estimate, then opens the review list.
"""

from __future__ import annotations

import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from tests.gui.test_onboarding import fill
from workstation.core.imageio import write_png
from workstation.gui.onboarding import OnboardingWizard
from workstation.services.phases import MIN_INTERVAL_S

HEIGHT, WIDTH, NORMALS = 500, 1240, 40
PHASES = (
    "importing the images",
    "reading normal images",
    "features",
    "memory bank",
    "calibration",
    "scoring the images",
    "preparing the preview",
)


def gray_shot(rng: np.random.Generator, *, defect: bool) -> np.ndarray:
    """A ball-screw-like gray part: a threaded band over brushed grain (uint8, H x W)."""
    grain = cv2.GaussianBlur(rng.normal(0, 12, (HEIGHT, WIDTH)), (0, 0), sigmaX=25, sigmaY=0.8)
    x = np.arange(WIDTH)
    thread = 30 * np.sin(2 * np.pi * (x + rng.uniform(0, 40)) / 40.0)
    image = 110 + grain + np.where(np.abs(np.arange(HEIGHT) - 250)[:, None] < 150, thread, 0)
    if defect:
        cv2.circle(image, (int(rng.integers(300, 900)), 250), 14, 20.0, -1)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_forty_real_sized_gray_normals_reach_the_review_list(qtbot, window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    folder = tmp_path / "shots"
    folder.mkdir()
    paths: dict[str, list] = {"normal": [], "defect": []}
    for kind, count in (("normal", NORMALS), ("defect", 2)):
        for i in range(count):
            path = folder / f"{kind}_{i:02d}.png"
            write_png(path, gray_shot(rng, defect=kind == "defect"))
            paths[kind].append(path)
    # real-sized files (decode, import, preview, review at 1240 x 500); the experts work at
    # a smaller size here so the test is not a benchmark (`bench onboard` times the default)
    ws = window.ws
    ws.settings = replace(ws.settings, experts=replace(ws.settings.experts, image_size=256))
    wizard = OnboardingWizard(ws, window)
    qtbot.addWidget(wizard)
    wizard.show()
    fill(wizard, paths)
    page = wizard.run_page
    lines: list[str] = []
    seen_at: dict[str, list[float]] = {}
    original = page._progress

    def record(done: int, total: int, message: str) -> None:
        lines.append(message)
        seen_at.setdefault(message.split(" ")[0], []).append(time.monotonic())
        original(done, total, message)

    page._progress = record  # type: ignore[method-assign]  # bound when the run starts
    wizard.next()
    qtbot.waitUntil(lambda: page.outcome is not None or not page.running, timeout=280000)
    assert page.outcome is not None, page.status.text()
    for phase in PHASES:
        assert any(line.startswith(phase) for line in lines), (phase, lines[-5:])
    estimated = {line.split(" ")[0] for line in lines if "left" in line}
    # a phase that ended within one report interval had no pace to estimate from
    lasting = {
        phase
        for phase in ("features", "memory", "calibration")
        if seen_at[phase][-1] - seen_at[phase][0] > 2 * MIN_INTERVAL_S
    }
    assert lasting <= estimated, (lasting, estimated)
    assert len(page.outcome.previews) == NORMALS + 2
    wizard.accept()
    window.open_product(wizard.product.name)
    qtbot.waitUntil(
        lambda: window.controller.current is not None
        and window.controller.product.name == "bracket"
        and window.list_model.rowCount() == NORMALS + 2,
        timeout=30000,
    )
    shown = window.controller.current.content
    assert shown.size == (WIDTH, HEIGHT) and shown.heatmap is not None
