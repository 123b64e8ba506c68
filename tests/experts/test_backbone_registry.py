"""The backbone registry refuses registrations that would make a name ambiguous."""

from __future__ import annotations

import pytest

from workstation.experts.base import (
    BACKBONE_PROVIDERS,
    BackboneProvider,
    build_backbone,
    register_backbones,
)


def _never(name: str, **_opts: object) -> object:
    raise AssertionError(f"built {name}")


def test_a_provider_key_registers_once() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_backbones(BackboneProvider("filterbank", lambda: ("other",), _never))


def test_only_one_provider_takes_unlisted_names() -> None:
    with pytest.raises(ValueError, match="only one"):
        register_backbones(BackboneProvider("second", lambda: (), _never, open_names=True))
    assert "second" not in BACKBONE_PROVIDERS


def test_a_provider_needs_a_factory() -> None:
    with pytest.raises(ValueError, match="needs a key"):
        BackboneProvider("broken", lambda: (), None)  # type: ignore[arg-type]


def test_the_weight_free_backbone_loads_no_learned_backbone_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    # restored afterwards, so later tests keep the classes they imported
    monkeypatch.delitem(sys.modules, "workstation.experts.backbones", raising=False)
    assert build_backbone("filterbank").name == "filterbank"
    assert "workstation.experts.backbones" not in sys.modules
