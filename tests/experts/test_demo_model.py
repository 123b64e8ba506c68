"""The self-taught model shipped with the demo: it loads with today's architecture, it was
trained on exactly the images the demo generator makes, and the demo installs it once."""

from __future__ import annotations

import json
from pathlib import Path

from workstation.core.imageio import read_image
from workstation.datasets.mvtec import load_category
from workstation.demo.generator import DemoSpec, generate
from workstation.demo.shipped import RECIPE_FILE, install_demo_model, shipped_demo_model
from workstation.experts.features import working_shape
from workstation.experts.selftaught import SIZE_MULTIPLE, SelfTaughtExpert
from workstation.store.repository import Store


def test_the_shipped_model_was_trained_on_this_generators_images(tmp_path: Path) -> None:
    folder = shipped_demo_model()
    assert folder is not None, "resources/models/demo-selftaught is missing"
    expert = SelfTaughtExpert.load(folder)  # refused if the architecture moved on
    recipe = json.loads((folder / RECIPE_FILE).read_text())
    category = load_category(generate(tmp_path, DemoSpec()).root)
    train = [read_image(item.path) for item in category.train]
    test = [read_image(item.path) for item in category.test]
    expected = working_shape(
        [im.shape[:2] for im in train], image_size=recipe["image_size"], multiple=SIZE_MULTIPLE
    )
    assert expert.config.shape == expected
    taught = int(expert.config.trained["normals"])
    # If the generator changed, its images no longer match the fingerprints: retrain with
    # python -m training.demo_model --out resources/models/demo-selftaught
    assert sum(expert.has_seen(im) for im in train) == taught
    assert not any(expert.has_seen(im) for im in test)  # never trained on the test split


def test_the_demo_installs_the_shipped_model_once(tmp_path: Path) -> None:
    with Store.open(tmp_path / "demo.sqlite") as store:
        product = store.create_product("demo-metal-plate", description="plates")
        assert install_demo_model(store, product, size=512) is None  # other size: not for it
        version = install_demo_model(store, product, size=DemoSpec().size)
        assert version is not None and version.kind == "selftaught" and version.state == "active"
        loaded = SelfTaughtExpert.load(store.model_files(version))
        assert loaded.config.trained["normals"] > 0
        store.set_model_state(version.id, "rolled_back")
        assert install_demo_model(store, product, size=DemoSpec().size) is None
        assert store.active_model_version(product.id, "selftaught") is None
