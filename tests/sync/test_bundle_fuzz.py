"""Fuzzing the bundle readers: any manifest, any member names, any table rows. A reader
either accepts the bundle or refuses it with a ``UserError``; nothing else escapes, and
nothing is written outside the store (issue 20)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from attack_kit import jsonl, read_bundle, snapshot, write_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sync_helpers import PRODUCT, add_images, give_feedback

from workstation.core.errors import UserError
from workstation.pretrained.bundles import install_bundle
from workstation.store.repository import Store
from workstation.sync.feedback import export_feedback, import_feedback
from workstation.sync.models import install_version

_ROOT = Path(tempfile.mkdtemp(prefix="iad-fuzz-"))


def _source() -> tuple[dict[str, Any], dict[str, bytes]]:
    bundle = _ROOT / "feedback.zip"
    if not bundle.exists():
        with Store.open(_ROOT / "source" / "s.sqlite") as source:
            ids = add_images(source, _ROOT / "images", [1])
            give_feedback(source, ids, verdict="anomalous", seed=4)
            export_feedback(source, PRODUCT, bundle)
    return read_bundle(bundle)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True),
    st.text(max_size=80),
    st.sampled_from(["..", "/", "/etc/passwd", "a" * 64, "../" * 22, "x\n", "C:\\x", "\x00"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
member_names = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(
        ["/abs", "../up", "files//etc/x", "images/../../x", "a\\b", "files/", ".hidden", "x" * 300]
    ),
).filter(lambda n: "\x00" not in n)


def _no_escape(run: Any, store_dir: Path) -> None:
    before = snapshot(_ROOT, [store_dir])
    try:
        run()
    except UserError as exc:
        text = str(exc)
        assert "\n" not in text and len(text) < 700, text[:200]
    assert snapshot(_ROOT, [store_dir]) == before


FIELDS = ["sha256", "name", "width", "height", "split", "source_label"]
REVISION_KEYS = ["kind", "station", "id", "image", "parent", "blob", "author", "seen", "verdict"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    manifest_key=st.sampled_from(["schema", "station", "product", "members", "format"]),
    manifest_value=values,
    image_key=st.sampled_from(FIELDS),
    image_value=values,
    revision_key=st.sampled_from(REVISION_KEYS),
    revision_value=values,
    extra_member=st.one_of(st.none(), member_names),
    which=st.integers(min_value=0, max_value=3),
)
def test_feedback_bundle_fuzz(
    manifest_key: str,
    manifest_value: Any,
    image_key: str,
    image_value: Any,
    revision_key: str,
    revision_value: Any,
    extra_member: str | None,
    which: int,
) -> None:
    manifest, members = _source()
    members = dict(members)
    if which == 0:
        manifest[manifest_key] = manifest_value
    elif which == 1:
        images = [json.loads(line) for line in members["images.jsonl"].splitlines()]
        images[0][image_key] = image_value
        members["images.jsonl"] = jsonl(images)
    elif which == 2:
        revisions = [json.loads(line) for line in members["revisions.jsonl"].splitlines()]
        revisions[0][revision_key] = revision_value
        members["revisions.jsonl"] = jsonl(revisions)
    if extra_member is not None:
        members[extra_member] = b"extra"
    crafted = write_bundle(_ROOT / "fuzz.zip", manifest, members)
    store_dir = _ROOT / "station"
    with Store.open(store_dir / "s.sqlite") as store:
        _no_escape(lambda: import_feedback(store, crafted), store_dir)
        assert store.check_integrity() == []


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.sampled_from(["version", "station", "kind", "product", "files_sha256", "metrics"]),
    value=values,
    member=member_names,
)
def test_model_bundle_fuzz(key: str, value: Any, member: str) -> None:
    manifest = {
        "format": "iad-workstation model version",
        "schema": 1,
        "product": PRODUCT,
        "version": "adapter-1",
        "kind": "adapter",
        "station": "0123abcd",
        "files_sha256": "0" * 64,
        key: value,
    }
    crafted = write_bundle(_ROOT / "model.zip", manifest, {member: b"weights"})
    store_dir = _ROOT / "models-station"
    with Store.open(store_dir / "s.sqlite") as store:
        if store.find_product(PRODUCT) is None:
            store.create_product(PRODUCT)
        _no_escape(lambda: install_version(store, crafted), store_dir)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=values, kind=values, member=member_names, size=st.integers(-5, 2**70))
def test_weight_bundle_fuzz(name: Any, kind: Any, member: str, size: int) -> None:
    files = {member: b"{}"}
    manifest = {"format": 1, "name": name, "kind": kind}
    crafted = write_bundle(
        _ROOT / "weights.zip", manifest, files, listed_key="files", sizes={member: size}
    )
    _no_escape(lambda: install_bundle(crafted), _ROOT / "none")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    flips=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8
    )
)
def test_flipped_bytes_of_a_bundle_file(flips: list[tuple[float, int]]) -> None:
    """Damage anywhere in the zip (headers, directory, deflate data): refused or, when
    the bytes did not matter, imported; never anything else."""
    _source()  # makes the real bundle once
    data = bytearray((_ROOT / "feedback.zip").read_bytes())
    for where, value in flips:
        data[int(where * len(data))] = value
    crafted = _ROOT / "flipped.zip"
    crafted.write_bytes(bytes(data))
    store_dir = _ROOT / "flip-station"
    with Store.open(store_dir / "s.sqlite") as store:
        _no_escape(lambda: import_feedback(store, crafted), store_dir)
