"""The kind registry: one registration per trained kind, strict hyperparameters."""

from __future__ import annotations

import dataclasses

import pytest

from workstation.core import kinds, strict
from workstation.core.errors import UserError


def test_every_registered_kind_provides_what_the_registry_promises() -> None:
    for kind in kinds.all_kinds():
        module = kind.implementation()
        assert dataclasses.is_dataclass(module.Hyperparameters), kind.name
        assert module.Hyperparameters.from_dict({}) == module.Hyperparameters()
        for name in ("check_feedback", "manifest_extras", "settings_defaults"):
            assert callable(getattr(module, name)), f"{kind.name}.{name}"
        assert isinstance(module.learns_from_all_normals, bool)
        if kind.expert is not None:
            assert callable(kind.attach()), kind.name
        assert kind.help and kind.title


@pytest.mark.parametrize("name", kinds.names())
def test_a_mistyped_hyperparameter_is_refused_naming_it_and_the_known_ones(name: str) -> None:
    kind = kinds.get(name)
    with pytest.raises(UserError) as caught:
        kind.hyperparameters({"stepz": 5})
    message = str(caught.value)
    assert "'stepz'" in message and "steps" in message and "\n" not in message


def test_valid_hyperparameters_become_the_kinds_dataclass() -> None:
    hyper = kinds.get("adapter").hyperparameters({"steps": 7})
    assert hyper.steps == 7
    assert kinds.get("adapter").hyperparameters(hyper) is hyper


def test_strict_from_dict_lists_every_unknown_key() -> None:
    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int = 0

    assert strict.from_dict(Point, {"x": 2}) == Point(2)
    with pytest.raises(UserError, match=r"unknown point setting 'a' \(and 'b'\); known: x"):
        strict.from_dict(Point, {"b": 1, "a": 2}, "point")


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(kinds.UnknownKindError, match="known: adapter, selftaught, vlm"):
        kinds.get("lora")
    with pytest.raises(ValueError, match="experts, adapter"):
        kinds.check_model_kind("lora")
    assert kinds.check_model_kind(kinds.EXPERTS) == "experts"


def test_a_kind_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        kinds.register(kinds.get("vlm"))
