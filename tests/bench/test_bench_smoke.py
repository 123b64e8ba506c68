"""Every ``iad-workstation bench`` subcommand runs end to end through the CLI entry point.

Benchmarks are not run in CI at their real sizes (they measure, they take minutes), so
without these a benchmark could break unnoticed; ``bench active`` once did. Each case runs
the real command on a tiny generated demo product at the smallest sizes it accepts and
checks the report it writes with ``--json``: every listed field is there and sane.

Adding a benchmark: append a :class:`Smoke` to :data:`SMOKES`;
``test_every_benchmark_has_a_smoke_test`` fails until you do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from workstation.__main__ import main
from workstation.active.strategies import DEFAULT_STRATEGY, REASONS, STRATEGIES
from workstation.bench import BENCH_MODULES
from workstation.demo.generator import DemoSpec, generate

Check = Callable[[Any], bool]


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def fraction(value: Any) -> bool:
    return isinstance(value, int | float) and 0.0 <= value <= 1.0


def equals(expected: Any) -> Check:
    return lambda value: value == expected


def each(check: Check) -> Check:
    return lambda values: bool(values) and all(check(v) for v in values)


def inspector_texts(data: Path) -> Path:
    """An inspector's text for every defect of the tiny demo (``bench explain --texts``)."""
    lines = [
        json.dumps({"image": f"{p.parent.name}/{p.name}", "text": f"A {p.parent.name} here."})
        for p in sorted((data / "test").glob("*/*.png"))
        if p.parent.name != "good"
    ]
    path = data.parent / "texts.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Smoke:
    """One benchmark run: ``bench NAME ARGS --json OUT``, then checks on the report."""

    bench: str
    args: Callable[[Path], list[str]]
    """Arguments after the benchmark's name, given the tiny demo product's folder."""
    fields: dict[str, Check] = field(default_factory=dict)
    """Dotted path into the JSON report -> what its value must satisfy."""
    label: str = ""

    @property
    def id(self) -> str:
        return self.label or self.bench


SMOKES: tuple[Smoke, ...] = (
    Smoke(
        "store",
        lambda _: ["--images", "4", "--size", "64", "--rows", "20", "--revisions", "4",
                   "--repeats", "1"],
        {
            "import_images": equals(4),
            "import_images_per_s": positive,
            "query_rows": equals(20),
            "query_page_ms": positive,
            "mask_revisions": equals(4),
            "mask_revisions_per_s": positive,
            "mask_revisions_per_s_batched": positive,
        },
    ),
    Smoke(
        "expert",
        lambda _: ["--size", "64", "--shots", "2", "--images", "2", "--bank-normals", "2",
                   "--threads", "1"],
        {
            "fit_seconds": positive,
            "predict_images_per_s": positive,
            "bank_rows": positive,
            "bank_normals": equals(2),
            "bank_peak_rss_mb": positive,
        },
    ),
    Smoke(
        "explain",
        lambda data: ["--maps", "2", "--size", "64", "--vlm", "tiny", "--vlm-runs", "1",
                      "--max-new-tokens", "2", "--check-locations", str(data)],
        {
            "template.explanations_per_s": positive,
            "vlm.runs": equals(1),
            "vlm.latency_s_mean": positive,
            "locations.masks": equals(10),
            "locations.agreement": fraction,
        },
    ),
    Smoke(
        "explain",
        lambda data: ["--maps", "0", "--vlm", "none", "--types", str(data), "--shots", "1",
                      "--seeds", "2", "--image-size", "64", "--normals", "4",
                      "--round-defects", "10", "--encoder", "ngram",
                      "--texts", str(inspector_texts(data))],
        {
            "types.defects": equals(10),
            "types.measure_s_per_defect": positive,
            "types.shots": each(
                lambda row: row["k"] == 1
                and fraction(row["accuracy"])
                and fraction(row["template_accuracy"])
                and fraction(row["macro_f1"])
                and -1 <= row["text_similarity"] <= 1
                and -1 <= row["template_text_similarity"] <= 1
            ),
            "types.round.defects": equals(10),
            "types.round.wall_s": positive,
            "types.round.after.held_out_type_accuracy": fraction,
        },
        label="explain-types",
    ),
    Smoke(
        "gui",
        lambda _: ["--size", "64", "--images", "3", "--switches", "2", "--strokes", "1",
                   "--inference", "1", "--large", "96"],
        {
            "image_switch_ms.n": equals(2),
            "image_switch_ms.p95": positive,
            "stroke_to_committed_ms.n": equals(1),
            "event_loop_stall_ms.inference_ok": equals(True),
            "large_image.open_s": positive,
        },
    ),
    Smoke(
        "onboard",
        lambda data: ["--images", "3", "--width", "96", "--height", "64",
                      "--source", str(data / "train" / "good")],
        {
            "images": equals(3),
            "size": equals("96x64"),
            "to_first_review_s": positive,
            "longest_silence_s": positive,
            "phases_s.features": lambda v: v >= 0,
            "phases_s.calibration": lambda v: v >= 0,
            "progress_lines": positive,
        },
    ),
    Smoke(
        "active",
        lambda data: ["--rounds", "2", "--budget", "2", "--shots", "2", "--image-size", "64",
                      "--seeds", "2", "--adapter-steps", "2", "--threads", "1", str(data)],
        {
            "settings.pool": positive,
            "settings.pool_defects": positive,
            "strategies.random.recall.area.mean": fraction,
            "strategies.random.recall.per_round": lambda v: len(v) == 3 and v[0] == 0.0,
            f"strategies.{DEFAULT_STRATEGY}.recall.gain_over_random.std": fraction,
            f"strategies.{DEFAULT_STRATEGY}.image_auroc.per_round": each(fraction),
            f"strategies.{DEFAULT_STRATEGY}.pixel_auroc.area_per_seed": lambda v: len(v) == 2,
            "strategies": lambda found: set(found) == set(STRATEGIES),
            "strategies.mixed.picks_by_reason": lambda v: set(v) <= set(REASONS),
            "table": lambda text: f"| {DEFAULT_STRATEGY} |" in text and "| mixed |" in text,
        },
    ),
    Smoke(
        "training",
        lambda data: ["--kinds", "adapter,selftaught,vlm", "--masks", "2", "--size", "64",
                      "--adapter-steps", "2", "--normals-from", str(data), "--normals", "4",
                      "--image-size", "64", "--budget-minutes", "0.01", "--vlm-steps", "1"],
        {
            "adapter_round.masks": equals(2),
            "adapter_round.steps": equals(2),
            "adapter_round.seconds": positive,
            "selftaught_round.normals": equals(4),
            "selftaught_round.held_out_normals": equals(4),
            "selftaught_round.seconds": positive,
            "selftaught_round.data": lambda text: text.endswith("demo-metal-plate"),
            "vlm_round.seconds": positive,
        },
        label="training-timing",
    ),
    Smoke(
        "training",
        lambda data: ["--curve", str(data), "--shots", "2", "--feedback", "1", "2",
                      "--image-size", "64", "--adapter-steps", "2"],
        {
            "feedback_defects": equals(5),
            "eval_defects": equals(5),
            "curve": lambda points: [p["masks"] for p in points] == [0, 1, 2],
        },
        label="training-curve",
    ),
    Smoke(
        "sync",
        lambda _: ["--images", "6", "--revisions", "30", "--size", "16"],
        {
            "images": equals(6),
            "revisions": equals(30),
            "masks": equals(12),
            "export_s": positive,
            "import_s": positive,
            "reimport_s": positive,
            "import_cpu_s": positive,
            "bundle_mb": positive,
        },
    ),
    Smoke(
        "damage",
        lambda _: ["--images", "60", "--revisions", "120"],
        {
            "cut-4k.images_saved": fraction,
            "cut-50%.rows_saved": fraction,
            "flip-0.rows_saved": fraction,
            "schema.images_saved": equals(1.0),
        },
    ),
    Smoke(
        "hostile",
        lambda _: ["--expand", "4", "--near", "3"],
        {
            **{f"{case}.exit_code": equals(2) for case in (
                "feedback-bomb", "model-bomb", "weights-bomb", "mask-50000", "png-19999"
            )},
            "feedback-bomb.peak_rss_mb": lambda mb: 0 < mb < 1024,
            "near-limit.exit_code": equals(2),
            "baseline.exit_code": equals(0),
        },
    ),
    Smoke(
        "large",
        lambda _: ["--side", "600", "--shot", "192", "--image-size", "96", "--shots", "6",
                   "--defect", "6"],
        {
            "tiles": equals(16),
            "s_per_tile": positive,
            "pyramid_s": positive,
            "fit_s": positive,
            "defects_found": lambda found: found in (0, 1, 2, 3),
            "map_shape": lambda shape: max(shape) <= 2048,
            "peak_rss_mb_self": positive,
            "peak_rss_mb_children": positive,
        },
    ),
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo product in MVTec layout: 10 train normals, 4 test normals, 10 defects."""
    spec = DemoSpec(size=64, train_good=10, test_good=4, per_defect=2)
    return generate(tmp_path_factory.mktemp("bench-data"), spec).root


def lookup(report: dict[str, Any], dotted: str) -> Any:
    value: Any = report
    for key in dotted.split("."):
        assert isinstance(value, dict) and key in value, f"report has no {dotted!r}"
        value = value[key]
    return value


def test_every_benchmark_has_a_smoke_test() -> None:
    assert {smoke.bench for smoke in SMOKES} == set(BENCH_MODULES)


@pytest.mark.parametrize("smoke", SMOKES, ids=lambda smoke: smoke.id)
def test_benchmark_runs_and_reports(
    smoke: Smoke, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    code = main(["bench", smoke.bench, *smoke.args(demo), "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    for dotted, check in smoke.fields.items():
        value = lookup(report, dotted)
        assert check(value), f"{dotted} = {value!r}"
