"""Fixtures shared by the expert tests."""

from __future__ import annotations

import dataclasses

import pytest

from workstation.pretrained import catalog


@pytest.fixture
def not_installed(monkeypatch: pytest.MonkeyPatch) -> str:
    """EfficientNet-Lite0 as on a station without its pip package (timm still there)."""
    entry = catalog.CATALOG["efficientnet-lite0"]
    missing = dataclasses.replace(entry, package="efficientnet-lite0-not-installed")
    monkeypatch.setitem(catalog.CATALOG, "efficientnet-lite0", missing)
    return "efficientnet-lite0"
