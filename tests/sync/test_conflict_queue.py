"""A sync conflict shows in the review list, and its filter finds it."""

from __future__ import annotations

from pathlib import Path

from sync_helpers import PRODUCT, add_images

from workstation.gui.image_list import ImageListModel, ImageListPanel
from workstation.services.review import QueueFilter, ReviewService
from workstation.store.repository import Store
from workstation.sync.feedback import export_feedback, import_feedback


def test_conflict_is_marked_and_filtered_in_the_review_list(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = Store.open(tmp_path / "a.sqlite")
    b = Store.open(tmp_path / "b.sqlite")
    a_ids = add_images(a, tmp_path / "img", [1, 2])
    (b_id,) = add_images(b, tmp_path / "img", [1])
    a.add_review(a_ids[0], "normal", reviewer="a")
    b.add_review(b_id, "anomalous", reviewer="b")
    import_feedback(a, export_feedback(b, PRODUCT, tmp_path / "b.zip").path)

    service = ReviewService(a, a.get_product(PRODUCT), reviewer="lead")
    model = ImageListModel(service)
    panel = ImageListPanel(model)
    qtbot.addWidget(panel)
    model.set_source(service, QueueFilter())
    texts = {model.data(model.index(row, 3)) for row in range(model.rowCount())}
    assert texts == {"anomalous (conflict)", "unreviewed"}
    panel.conflicts.setChecked(True)
    flt = panel.current_filter()
    assert flt.conflicts and service.count(flt) == 1
    a.close()
    b.close()
