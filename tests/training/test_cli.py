"""``iad-workstation train`` and ``models promote|rollback`` on a small store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from feedback_store import PRODUCT, feedback_store

from workstation.__main__ import main


def test_train_skips_without_enough_new_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feedback_store(tmp_path, normals=1, defects=1).close()
    db = str(tmp_path / "store" / "ws.sqlite")
    assert main(["train", "--product", PRODUCT, "--if-new-labels", "5", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out) == {"status": "skipped", "new_labels": 2}


def test_train_with_one_sided_feedback_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feedback_store(tmp_path, defects=0).close()
    db = str(tmp_path / "store" / "ws.sqlite")
    assert main(["train", "--product", PRODUCT, "--db", db]) == 2
    assert "no corrected defect masks" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--kind", "selftaught", "--families", "scratch,rust"], "unknown synthetic defect"),
        (["--kind", "adapter", "--families", "scratch"], "--kind selftaught only"),
    ],
)
def test_train_refuses_a_wrong_family_choice_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    feedback_store(tmp_path, normals=2, defects=1).close()
    db = str(tmp_path / "store" / "ws.sqlite")
    assert main(["train", "--product", PRODUCT, *arguments, "--db", db]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_promote_and_rollback_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = feedback_store(tmp_path, normals=0, defects=0)
    product = store.get_product(PRODUCT)
    first = store.add_model_version(product.id, name="adapter-x", kind="adapter", state="active")
    store.add_model_version(
        product.id, name="adapter-y", kind="adapter", state="candidate", parent_id=first.id
    )
    store.close()
    db = str(tmp_path / "store" / "ws.sqlite")
    assert main(["models", "promote", "adapter-y", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["active"] == "adapter-y"
    assert main(["models", "rollback", "--product", PRODUCT, "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["active"] == "adapter-x"
    assert main(["models", "promote", "nope", "--db", db]) == 2
    assert "no model version 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "adapter", "--encoder", "scratch"], "--encoder applies to --kind selftaught"),
        (["--kind", "vlm", "--budget-minutes", "2"], "--budget-minutes applies to --kind"),
        (["--kind", "selftaught", "--encoder", "vgg"], "encoder must be one of scratch, "),
        (["--kind", "adapter", "--steps", "0"], "adapter steps and batch_size must be at least 1"),
    ],
)
def test_train_encoder_only_goes_with_a_selftaught_round_and_a_known_encoder(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feedback_store(tmp_path, normals=2, defects=0).close()
    db = str(tmp_path / "store" / "ws.sqlite")
    assert main(["train", "--product", PRODUCT, "--db", db, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
