"""The recipe of the self-taught model that ships with the built-in demo.

``python -m training.demo_model --out resources/models/demo-selftaught`` generates the demo
product exactly as ``iad-workstation demo`` does (same spec, same seed, so the same
pixels), trains a self-taught network on its ``train/good`` images only, the way a round
does, and writes the model folder plus ``recipe.json`` (what was trained, how long, on
which torch). The demo's test images are never seen. Shipping the result lets a new user's
first window open on a detector that finds the demo's defects within seconds; training it
takes minutes, which a first look should not cost. Re-run it whenever the demo generator or
the network changes: ``tests/experts/test_demo_model.py`` fails when the shipped model no
longer matches the generator's images or the architecture.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from training.kinds.selftaught import SelfTaughtHyperparameters
from training.selftaught_round import fit_selftaught
from workstation.core.imageio import read_image, write_bytes_atomic
from workstation.datasets.mvtec import load_category
from workstation.demo.generator import DemoSpec, generate

RECIPE_FILE = "recipe.json"
DEMO_IMAGE_SIZE = 512
"""The experts' default working size (the demo's 256 px images are never upsampled)."""
SEED = 0


DEMO_SPEC = DemoSpec()
"""What ``iad-workstation demo`` generates by default (256 px), so the same pixels."""


def train_demo_model(
    out: Path, *, steps: int, budget_minutes: float, device: str = "cpu"
) -> dict[str, object]:
    """Train on the demo's normal training images and write the model folder to ``out``.

    Bounded by ``steps`` (the time budget only guards against a very slow machine), so the
    same recipe gives the same schedule on any machine.
    """
    import torch

    spec = DEMO_SPEC
    with tempfile.TemporaryDirectory(prefix="iad-demo-model-") as scratch:
        summary = generate(Path(scratch), spec)
        category = load_category(summary.root)
        normals = [read_image(item.path) for item in category.train]
    hyper = SelfTaughtHyperparameters(steps=steps, budget_minutes=budget_minutes)
    expert, record = fit_selftaught(
        normals, image_size=DEMO_IMAGE_SIZE, hyper=hyper, seed=SEED, device=device
    )
    expert.save(out)
    recipe = {
        "demo_spec": asdict(spec),
        "image_size": DEMO_IMAGE_SIZE,
        "seed": SEED,
        "hyperparameters": asdict(hyper),
        "synthetic_mix": dict(hyper.mix().weights),
        "trained_on": f"{len(normals)} demo train/good images "
        f"({int(expert.config.trained['normals'])} taught, the rest kept for calibration)",
        "steps": record.steps,
        "seconds": record.seconds,
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_bytes_atomic(out / RECIPE_FILE, json.dumps(recipe, indent=2).encode("utf-8"))
    return recipe


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo_model", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="model folder to (over)write")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    recipe = train_demo_model(
        args.out, steps=args.steps, budget_minutes=args.budget_minutes, device=args.device
    )
    print(json.dumps(recipe, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
