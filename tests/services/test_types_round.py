"""A types round learns the demo's defect types from reviews and rewrites the next drafts.

The whole path on a small generated demo product: import, inspect (template drafts), an
inspector corrects the type of some defects, a ``types`` round runs as a child process,
is gated, registered and promoted, the unreviewed images' drafts name the learned type
with its confidence and examples (source ``types:<version>``), the Defect column and the
filter follow, and a rollback brings the template's drafts back.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from workstation.__main__ import main
from workstation.config import ExpertSettings
from workstation.core.errors import UserError
from workstation.core.types import Explanation
from workstation.demo.generator import DEFECT_TYPES, DemoSpec, generate
from workstation.services.explain import build_request
from workstation.services.importing import import_directory
from workstation.services.review import QueueFilter, ReviewService
from workstation.services.rounds import RoundOptions, run_round
from workstation.services.triage import triage_product
from workstation.services.typed_drafts import draft_explainer
from workstation.store.repository import Store

SETTINGS = ExpertSettings(image_size=128, target_false_positive_rate=0.2)
REVIEWED_PER_TYPE = 4


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("types-demo")
    spec = DemoSpec(size=128, train_good=8, test_good=2, per_defect=REVIEWED_PER_TYPE + 2)
    return generate(root, spec).root


def _reviewed_store(tmp_path: Path, demo: Path, *, per_type: int) -> tuple[Store, ReviewService]:
    store = Store.open(tmp_path / "ws.sqlite")
    import_directory(store, demo, product="plate")
    store.update_product("plate", defect_vocabulary=DEFECT_TYPES)
    triage_product(store, "plate", SETTINGS)
    product = store.get_product("plate")
    service = ReviewService(store, product, reviewer="anna")
    for kind in DEFECT_TYPES:
        records = sorted(
            (r for r in store.list_images(product.id) if r.source_label == kind),
            key=lambda r: r.path,
        )
        for record in records[:per_type]:
            mask = store.load_mask(store.latest_mask_revision(record.id))
            service.save_mask(record.id, mask)
            words = f"A {kind.replace('_', ' ')} on the face, about 1% of the plate, top left."
            service.save_explanation(
                record.id,
                Explanation(verdict="anomalous", defect_type=kind, description=words),
            )
            service.review(record.id, "anomalous")
    return store, service


def _options() -> RoundOptions:
    return RoundOptions(kind="types", image_size=SETTINGS.image_size, holdout_fraction=0.25)


def test_types_round_promotes_and_redrafts_unreviewed_images(tmp_path: Path, demo: Path) -> None:
    store, service = _reviewed_store(tmp_path, demo, per_type=REVIEWED_PER_TYPE)
    product = store.get_product("plate")
    outcome = run_round(store, "plate", _options())
    assert outcome.status == "succeeded", outcome.message
    assert outcome.version is not None and outcome.version.kind == "types"
    metrics = outcome.version.metrics
    assert "after.held_out_type_accuracy" in metrics
    assert "before.held_out_type_accuracy" in metrics
    if outcome.version.state != "active":
        pytest.fail(f"the first head was not promoted: {outcome.message}")
    unreviewed = store.query_images(product.id, review_state="unreviewed", order_by="name")
    defects = [r for r in unreviewed if r.image.source_label in DEFECT_TYPES]
    right = 0
    for row in defects:
        draft = service.detail(row.image.id).draft
        assert draft is not None and draft.source == f"types:{outcome.version.name}"
        text = draft.explanation.description
        if draft.explanation.verdict == "normal":
            continue  # a defect the experts missed: nothing to name
        if draft.explanation.defect_type:
            assert f"{draft.explanation.defect_type} (" in text and "like " in text
            assert "reviewed by anna" in text  # the inspector's own words are quoted
        else:
            assert text.startswith("Type unsure")
    # The same drafter on the next defects' true regions (as once an inspector outlines
    # them, or the experts find them): 10 unreviewed defects, 2 per type.
    explainer = draft_explainer(store, product)
    for row in defects:
        request = build_request(store, row.image.id, with_reference=False)
        truth = store.load_mask(store.latest_mask_revision(row.image.id))
        said = explainer.explain(replace(request, mask=truth)).explanation
        right += said.defect_type == row.image.source_label
    assert right >= 7, f"only {right} of {len(defects)} drafts name the right type"
    shown = {r.image.id: r.defect_type for r in service.rows(QueueFilter(), offset=0, limit=500)}
    for row in defects:
        latest = store.latest_explanation(row.image.id)
        assert latest is not None and (shown[row.image.id] or "") == latest.explanation.defect_type
    crack_rows = service.rows(QueueFilter(defect_type="crack"), offset=0, limit=500)
    assert all(r.defect_type == "crack" for r in crack_rows) and crack_rows

    db = str(store.path)
    assert main(["models", "rollback", "--db", db, "--product", "plate", "--kind", "types"]) == 0
    for row in defects:
        draft = service.detail(row.image.id).draft
        assert draft is not None and draft.source == "template"
    store.close()


def test_types_round_refuses_a_single_type(tmp_path: Path, demo: Path) -> None:
    store, service = _reviewed_store(tmp_path, demo, per_type=0)
    product = store.get_product("plate")
    for record in [r for r in store.list_images(product.id) if r.source_label == "crack"][:2]:
        service.save_mask(record.id, store.load_mask(store.latest_mask_revision(record.id)))
        service.save_explanation(record.id, Explanation(verdict="anomalous", defect_type="crack"))
        service.review(record.id, "anomalous")
    with pytest.raises(UserError, match="at least two defect types"):
        run_round(store, "plate", _options())
    store.close()


def test_search_finds_reviewed_defects_by_words(
    tmp_path: Path, demo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = _reviewed_store(tmp_path, demo, per_type=1)
    db = str(store.path)
    store.close()
    assert main(["search", "--db", db, "--product", "plate", "--encoder", "ngram",
                 "missing material on the face", "--limit", "3"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 3 and hits[0]["defect_type"] == "missing_material"
    assert hits[0]["similarity"] >= hits[1]["similarity"] >= hits[2]["similarity"]
    assert main(["search", "--db", db, "--product", "plate", "x", "--limit", "0"]) == 2


def test_before_any_example_the_template_speaks_the_products_words(tmp_path: Path) -> None:
    from workstation.core.types import AnomalyMap
    from workstation.explain.prompts import ExplainRequest
    from workstation.services.typed_drafts import PriorExplainer

    values = np.zeros((64, 64), np.float32)
    values[30:32, 5:60] = 3.0  # a long thin line: the template's "scratch" shape
    request = ExplainRequest(
        image=np.full((64, 64, 3), 128, np.uint8),
        anomaly_map=AnomalyMap(values, score=3.0, threshold=1.0),
    )
    table = {"scratch": {"delamination": 0.8, "porosity": 0.2}}
    explainer = PriorExplainer(("delamination", "porosity"), lambda s: table.get(s, {}))
    said = explainer.explain(request).explanation
    assert said.defect_type == "delamination" and explainer.source == "template"
    known = PriorExplainer(("scratch", "porosity"), lambda shape: {"porosity": 1.0})
    assert known.explain(request).explanation.defect_type == "scratch"  # the template's own
