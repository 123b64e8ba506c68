"""The product's pipeline takes its pool from the imported, unreviewed images and keeps it in
the model version."""

from __future__ import annotations

import hashlib
from pathlib import Path

from synthetic_parts import textured

from workstation.config import ExpertSettings
from workstation.core.imageio import write_png
from workstation.experts.pipeline import InspectionPipeline
from workstation.experts.pool import PoolExpert
from workstation.services.onboard import onboard_product
from workstation.store.repository import Store


def test_onboarding_the_pool_expert_uses_unreviewed_imports(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "db.sqlite")
    product = store.create_product("bracket")
    ids = []
    for seed, split, label in [
        *[(s, "train", "good") for s in range(4)],
        *[(50 + s, "unlabeled", None) for s in range(4)],
    ]:
        path = tmp_path / f"{split}{seed}.png"
        write_png(path, textured(seed))
        record, _ = store.add_image(
            product.id,
            path=path,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            width=96,
            height=96,
            split=split,
            source_label=label,  # type: ignore[arg-type]
        )
        ids.append(record.id)
    store.add_review(ids[-1], "normal", reviewer="qa")  # judged: no longer in the pool
    settings = ExpertSettings(enabled=("pool",), image_size=96, target_false_positive_rate=0.2)
    result = onboard_product(store, "bracket", settings)
    loaded = InspectionPipeline.load(store.model_files(result.version))
    pool = loaded.bank_expert()
    assert isinstance(pool, PoolExpert) and pool.pool_size == 3
    store.close()
