"""Three stations exchanging feedback bundles converge, whatever the order, losing nothing."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import pytest
from sync_helpers import PRODUCT, add_images, current_state, give_feedback, revision_keys

from workstation.store.repository import Store
from workstation.sync.feedback import export_feedback, import_feedback

STATIONS = ("a", "b", "c")


def _stations(tmp_path: Path) -> dict[str, Store]:
    """a and b disagree on image 2, b and c on image 3; c overrides a on image 1 knowingly."""
    stores = {name: Store.open(tmp_path / name / "station.sqlite") for name in STATIONS}
    a, b, c = stores["a"], stores["b"], stores["c"]
    a_ids = add_images(a, tmp_path / "line-a", [1, 2, 4])
    give_feedback(a, a_ids[:2], verdict="normal", seed=10)
    b_ids = add_images(b, tmp_path / "line-b", [2, 3, 5])
    give_feedback(b, b_ids[:2], verdict="anomalous", seed=20)
    c_ids = add_images(c, tmp_path / "line-c", [3, 6])
    give_feedback(c, c_ids[:1], verdict="normal", seed=30)
    import_feedback(c, export_feedback(a, PRODUCT, tmp_path / "a0.zip").path)
    image_1 = c.find_image(c.get_product(PRODUCT).id, a.get_image(a_ids[0]).sha256)
    assert image_1 is not None
    c.add_review(image_1.id, "anomalous", reviewer="inspector-c")
    return stores


@pytest.mark.parametrize("order", list(permutations(STATIONS)), ids="-".join)
def test_every_order_converges_and_keeps_every_revision(
    tmp_path: Path, order: tuple[str, ...]
) -> None:
    stores = _stations(tmp_path)
    everything = set().union(*(revision_keys(s) for s in stores.values()))
    bundles = {
        name: export_feedback(store, PRODUCT, tmp_path / f"{name}.zip").path
        for name, store in stores.items()
    }
    for name, store in stores.items():
        for other in order:
            if other != name:
                import_feedback(store, bundles[other])
    states = [current_state(store) for store in stores.values()]
    assert states[0] == states[1] == states[2]
    for store in stores.values():
        assert revision_keys(store) == everything

    a = stores["a"]
    product = a.get_product(PRODUCT)
    by_seed = {row.image.name: row for row in a.query_images(product.id)}
    assert by_seed["part_0002.png"].conflict  # a: normal, b: anomalous, unseen by each other
    assert by_seed["part_0003.png"].conflict  # b: anomalous, c: normal
    assert not by_seed["part_0001.png"].conflict  # c saw a's verdict and overrode it
    assert by_seed["part_0001.png"].review_verdict == "anomalous"
    assert a.count_images(product.id, conflict=True) == 2

    # A relay: a fresh station that only gets one station's full export ends up the same.
    relay = export_feedback(stores[order[0]], PRODUCT, tmp_path / "relay.zip").path
    with Store.open(tmp_path / "d" / "station.sqlite") as d:
        import_feedback(d, relay)
        assert current_state(d) == states[0]
        assert revision_keys(d) == everything
    for store in stores.values():
        store.close()


def test_an_inspectors_review_ends_a_conflict_everywhere(tmp_path: Path) -> None:
    stores = _stations(tmp_path)
    a, b = stores["a"], stores["b"]
    import_feedback(a, export_feedback(b, PRODUCT, tmp_path / "b.zip").path)
    export = export_feedback(a, PRODUCT, tmp_path / "a.zip")
    import_feedback(b, export.path)
    product = a.get_product(PRODUCT)
    row = next(r for r in a.query_images(product.id, conflict=True))
    a.add_review(row.image.id, "anomalous", reviewer="lead")
    assert a.count_images(product.id, conflict=True) == 0
    later = export_feedback(a, PRODUCT, tmp_path / "a2.zip", since=export.stamp)
    assert later.revisions == 1 and later.images == 1
    import_feedback(b, later.path)
    assert current_state(a) == current_state(b)
    assert b.count_images(b.get_product(PRODUCT).id, conflict=True) == 0


def test_import_twice_changes_nothing(tmp_path: Path) -> None:
    stores = _stations(tmp_path)
    bundle = export_feedback(stores["b"], PRODUCT, tmp_path / "b.zip").path
    first = import_feedback(stores["a"], bundle)
    state, keys = current_state(stores["a"]), revision_keys(stores["a"])
    second = import_feedback(stores["a"], bundle)
    assert sum(first.added.values()) > 0 and sum(second.added.values()) == 0
    assert second.images_added == 0 and second.known == sum(first.added.values())
    assert current_state(stores["a"]) == state and revision_keys(stores["a"]) == keys


def test_equal_times_are_broken_by_station_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = Store.open(tmp_path / "a.sqlite")
    b = Store.open(tmp_path / "b.sqlite")
    (a_id,) = add_images(a, tmp_path / "img", [7])
    (b_id,) = add_images(b, tmp_path / "img", [7])
    at = "2026-01-01T00:00:00+00:00"
    monkeypatch.setattr("workstation.store.revisions.timestamp", lambda: at)
    a.add_review(a_id, "normal", reviewer="x")
    b.add_review(b_id, "anomalous", reviewer="y")
    import_feedback(a, export_feedback(b, PRODUCT, tmp_path / "b.zip").path)
    import_feedback(b, export_feedback(a, PRODUCT, tmp_path / "a.zip").path)
    winner = "normal" if a.station_id > b.station_id else "anomalous"
    assert a.latest_review(a_id).verdict == b.latest_review(b_id).verdict == winner  # type: ignore[union-attr]
    assert current_state(a) == current_state(b)


def test_images_arrive_as_files_beside_the_store(tmp_path: Path) -> None:
    stores = _stations(tmp_path)
    a, b = stores["a"], stores["b"]
    report = import_feedback(a, export_feedback(b, PRODUCT, tmp_path / "b.zip").path)
    assert report.images_added == 2  # seeds 3 and 5; seed 2 is the same file as a's
    for image in a.list_images(a.get_product(PRODUCT).id):
        assert Path(image.path).is_file()
    assert a.check_integrity() == []
