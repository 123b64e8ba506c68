"""The review service without a window: queue order, revisions, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.core.errors import UserError
from workstation.core.types import Explanation
from workstation.services.review import QueueFilter, ReviewService
from workstation.store.repository import Store


@pytest.fixture
def service(demo_db):  # type: ignore[no-untyped-def]
    store = Store.open(demo_db)
    yield ReviewService(store, store.get_product("widget"), reviewer="ann")
    store.close()


def test_queue_by_score_until_priorities_exist(service) -> None:  # type: ignore[no-untyped-def]
    assert service.order == "score"
    scores = [r.score for r in service.rows(QueueFilter(), offset=0, limit=5)]
    assert scores == sorted(scores, reverse=True)
    ids = [r.image.id for r in service.rows(QueueFilter(), offset=0, limit=100)]
    service.store.set_priorities(service.product.id, {ids[-1]: 9.0, ids[-2]: 5.0})
    service.refresh_order()
    assert service.order == "priority"
    assert [r.image.id for r in service.rows(QueueFilter(), offset=0, limit=2)] == [
        ids[-1],
        ids[-2],
    ]


def test_revisions_chain_and_unchanged_text_writes_nothing(service) -> None:  # type: ignore[no-untyped-def]
    row = service.rows(QueueFilter(predicted_anomalous=True), offset=0, limit=1)[0]
    image_id = row.image.id
    mask = np.zeros((row.image.height, row.image.width), np.uint8)
    mask[5:9, 5:9] = 1
    first = service.save_mask(image_id, mask)
    second = service.save_mask(image_id, np.zeros_like(mask))
    assert (first.source, first.author, second.parent_id) == ("inspector", "ann", first.id)
    text = Explanation("anomalous", "dent", "center", "high", "a dent")
    saved = service.save_explanation(image_id, text)
    assert service.save_explanation(image_id, text) == saved
    service.review(image_id, "normal")
    latest = service.store.latest_explanation(image_id)
    assert latest.explanation.verdict == "normal" and latest.parent_id == saved.id
    assert service.progress() == (1, 12)


def test_bad_input_is_a_clear_error(service) -> None:  # type: ignore[no-untyped-def]
    row = service.rows(QueueFilter(), offset=0, limit=1)[0]
    with pytest.raises(UserError, match="mask is 3x2"):
        service.save_mask(row.image.id, np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="verdict"):
        service.review(row.image.id, "maybe")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="score range is empty"):
        QueueFilter(score_min=2.0, score_max=1.0)
    unscored = next(r for r in service.rows(QueueFilter(), offset=0, limit=100) if r.score is None)
    with pytest.raises(UserError, match="no heatmap"):
        service.heatmap_mask(service.detail(unscored.image.id))
    assert service.store.latest_review(row.image.id) is None  # nothing was written
