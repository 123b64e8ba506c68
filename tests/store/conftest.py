"""A fresh store for each store test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workstation.store.repository import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store" / "test.sqlite") as opened:
        yield opened
