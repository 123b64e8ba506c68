"""The self-taught model that ships with the built-in demo, and putting it into a store.

The project trains it on the demo product's own ``train/good`` images with
``python -m training.demo_model`` (its recipe and the numbers it reached are in
``recipe.json`` beside the weights). Installing it into the demo store as the product's
active self-taught version means the first window already shows a detector that finds
the demo's defects, instead of asking a first-time user to wait minutes for a round. It
is registered like any trained version (hashed, in the store's own models folder), so it
can be rolled back, and a round trained later replaces it through the usual gate.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from workstation.core.types import ModelVersion, Product
from workstation.demo.generator import DemoSpec
from workstation.experts.selftaught import CONFIG_FILE
from workstation.paths import resources_dir
from workstation.store.repository import Store

RECIPE_FILE = "recipe.json"
SHIPPED_SOURCE = "shipped with the demo (python -m training.demo_model)"


def shipped_demo_model() -> Path | None:
    """The shipped model folder, or None in an installation without it."""
    folder = resources_dir() / "models" / "demo-selftaught"
    return folder if (folder / CONFIG_FILE).is_file() else None


def install_demo_model(store: Store, product: Product, *, size: int) -> ModelVersion | None:
    """Register the shipped network as the demo product's active self-taught version.

    Only for the demo's default image size (the network learned that product at that
    resolution), and only once: if the product has any self-taught version (the shipped
    one, rolled back or not, or one trained here), the store's history is left alone.
    """
    source = shipped_demo_model()
    if source is None or size != DemoSpec().size:
        return None
    if store.list_model_versions(product.id, kind="selftaught"):
        return None
    staging = store.new_model_folder()
    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, staging / item.name)
    recipe = json.loads((source / RECIPE_FILE).read_text(encoding="utf-8"))
    return store.add_model_version(
        product.id,
        kind="selftaught",
        state="active",
        files=staging,
        metrics={"trained.steps": float(recipe.get("steps", 0))},
        config={"source": SHIPPED_SOURCE, "image_size": recipe.get("image_size")},
    )
