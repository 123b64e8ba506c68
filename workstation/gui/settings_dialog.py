"""Settings: experts, backbone, explainer / VLM, device, paths and keyboard shortcuts.

Values are checked with the same :func:`workstation.config.merge` the application loads
them with, then written to the user's ``config.toml`` (only the sections shown here, other
sections of the file are kept). Shortcuts live in the store (see ``shortcuts.py``).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from typing import Any

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QMessageBox,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from workstation.config import ALIGN_MODES, Settings, merge, user_config_path
from workstation.core.errors import UserError
from workstation.gui.app import Workstation
from workstation.gui.shortcuts import ACTIONS, conflicts, save_bindings
from workstation.gui.workers import unload_models
from workstation.paths import user_data_dir
from workstation.pretrained.catalog import find_entry
from workstation.pretrained.weights import bundles_dir

EXPERTS = ("fewshot", "zeroshot")
DEVICES = ("auto", "cpu", "cuda")
EXPLAINERS = ("template", "vlm")
KEYS_PER_ACTION = 3


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_user_config(settings: Settings, sections: tuple[str, ...]) -> None:
    """Rewrite ``sections`` of the user's config file, keeping any other section in it."""
    path = user_config_path()
    existing: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as handle:
            existing = tomllib.load(handle)
    for name in sections:
        section = getattr(settings, name)
        existing[name] = {f.name: getattr(section, f.name) for f in fields(section)}
    lines = ["# Written by the IAD Workstation settings dialog."]
    for name, values in existing.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def _form(widget: QWidget) -> QFormLayout:
    form = QFormLayout(widget)
    form.setContentsMargins(16, 16, 16, 16)
    form.setVerticalSpacing(10)
    form.setHorizontalSpacing(14)
    return form


def _backbone_source(name: str) -> str:
    """Where a backbone's weights come from, so an installed pip package is named."""
    from workstation.experts.choosing import AUTO

    if name == AUTO:
        return (
            "Chosen per product at each fit among the filter bank and the installed "
            "ImageNet backbones, on held-out evidence (the Models dock says why)."
        )
    if name == "filterbank":
        return "Weight-free filter bank: nothing to install."
    entry = find_entry(name)
    return f"{entry.summary}. Source: {entry.source}." if entry is not None else ""


def _read_only(text: str) -> QLineEdit:
    line = QLineEdit(text)
    line.setReadOnly(True)
    line.setCursorPosition(0)
    return line


class SettingsDialog(QDialog):
    SECTIONS = ("device", "experts", "explainer", "review")

    def __init__(
        self, ws: Workstation, bindings: dict[str, tuple[str, ...]], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.ws = ws
        self.bindings = dict(bindings)
        self.settings = ws.settings
        self.setWindowTitle("Settings")
        self.resize(720, 560)
        tabs = QTabWidget()
        tabs.addTab(self._experts_tab(), "Experts")
        tabs.addTab(self._explainer_tab(), "Explainer")
        tabs.addTab(self._device_tab(), "Device and paths")
        tabs.addTab(self._shortcuts_tab(), "Shortcuts")
        self.tabs = tabs
        note = QLabel("Expert and device changes apply to the next inspection or training round.")
        note.setObjectName("muted")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(note, 1)
        bottom.addWidget(buttons)
        layout.addLayout(bottom)

    # -- tabs -------------------------------------------------------------------------------
    def _experts_tab(self) -> QWidget:
        from workstation.experts.base import available_backbones
        from workstation.experts.choosing import AUTO

        e = self.settings.experts
        page = QWidget()
        form = _form(page)
        self.expert_boxes = {name: QCheckBox(name) for name in EXPERTS}
        row = QHBoxLayout()
        for name, box in self.expert_boxes.items():
            box.setChecked(name in e.enabled)
            row.addWidget(box)
        row.addStretch(1)
        form.addRow("Experts", row)
        self.backbone = QComboBox()
        self.backbone.addItems([AUTO, *available_backbones()])
        self.backbone_source = QLabel()
        self.backbone_source.setWordWrap(True)
        self.backbone.currentTextChanged.connect(
            lambda name: self.backbone_source.setText(_backbone_source(name))
        )
        self.backbone.setCurrentText(e.backbone)
        self.backbone_source.setText(_backbone_source(self.backbone.currentText()))
        form.addRow("Backbone", self.backbone)
        form.addRow("", self.backbone_source)
        self.clip_model = QLineEdit(e.clip_model)
        form.addRow("Zero-shot CLIP model", self.clip_model)
        self.image_size = QSpinBox()
        self.image_size.setRange(32, 2048)
        self.image_size.setValue(e.image_size)
        self.image_size.setSuffix(" px")
        form.addRow("Working size", self.image_size)
        self.memory_budget = QSpinBox()
        self.memory_budget.setRange(100, 1_000_000)
        self.memory_budget.setValue(e.memory_budget)
        form.addRow("Memory bank (patches)", self.memory_budget)
        self.fpr = QDoubleSpinBox()
        self.fpr.setRange(0.001, 0.5)
        self.fpr.setDecimals(3)
        self.fpr.setSingleStep(0.01)
        self.fpr.setValue(e.target_false_positive_rate)
        form.addRow("Target false-positive rate", self.fpr)
        self.align = QComboBox()
        self.align.addItems(ALIGN_MODES)
        self.align.setCurrentText(e.align)
        self.align.setToolTip(
            "Register every image to a reference normal before the experts: for parts that "
            "shift or turn in the frame. 'off' for fixed parts and textures."
        )
        form.addRow("Pose alignment", self.align)
        return page

    def _explainer_tab(self) -> QWidget:
        x = self.settings.explainer
        page = QWidget()
        form = _form(page)
        self.explainer = QComboBox()
        self.explainer.addItems(EXPLAINERS)
        self.explainer.setCurrentText(x.kind if x.kind in EXPLAINERS else "vlm")
        form.addRow("Explainer", self.explainer)
        self.vlm = QLineEdit(x.vlm)
        form.addRow("VLM", self.vlm)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(16, 4096)
        self.max_tokens.setValue(x.max_new_tokens)
        form.addRow("Max new tokens", self.max_tokens)
        self.use_reference = QCheckBox("Show the VLM a normal reference image")
        self.use_reference.setChecked(x.use_reference_image)
        form.addRow("", self.use_reference)
        r = self.settings.review
        self.reviewer = QLineEdit(r.reviewer)
        self.reviewer.setPlaceholderText("your login name")
        form.addRow("Reviewer name", self.reviewer)
        self.autosave = QSpinBox()
        self.autosave.setRange(100, 1000)
        self.autosave.setSuffix(" ms")
        self.autosave.setValue(min(1000, r.text_autosave_ms))
        form.addRow("Save text after a pause of", self.autosave)
        return page

    def _device_tab(self) -> QWidget:
        page = QWidget()
        form = _form(page)
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.addItems(DEVICES)
        self.device.setCurrentText(self.settings.device.preference)
        form.addRow("Device", self.device)
        form.addRow("Store", _read_only(str(self.ws.store.path)))
        form.addRow("User data", _read_only(str(user_data_dir())))
        form.addRow("Store models", _read_only(str(self.ws.store.models_dir)))
        form.addRow("Model bundles", _read_only(str(bundles_dir())))
        form.addRow("Settings file", _read_only(str(user_config_path())))
        return page

    def _shortcuts_tab(self) -> QWidget:
        table = QTableWidget(len(ACTIONS), 1 + KEYS_PER_ACTION)
        table.setHorizontalHeaderLabels(["Action", "Key", "Second key", "Third key"])
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.key_edits: dict[str, tuple[QKeySequenceEdit, ...]] = {}
        for row, spec in enumerate(ACTIONS):
            table.setItem(row, 0, QTableWidgetItem(f"{spec.group}: {spec.label}"))
            keys = [*self.bindings.get(spec.id, ()), *[""] * KEYS_PER_ACTION]
            edits = tuple(QKeySequenceEdit(QKeySequence(k)) for k in keys[:KEYS_PER_ACTION])
            for column, edit in enumerate(edits, start=1):
                line = edit.findChild(QLineEdit)
                if line is not None:  # Qt's "Press shortcut" is clipped in a narrow cell
                    line.setPlaceholderText("none")
                table.setCellWidget(row, column, edit)
            self.key_edits[spec.id] = edits
        table.resizeRowsToContents()
        self.shortcut_table = table
        return table

    # -- saving -----------------------------------------------------------------------------
    def edited_settings(self) -> Settings:
        enabled = [name for name, box in self.expert_boxes.items() if box.isChecked()]
        if not enabled:
            raise UserError("enable at least one expert")
        overrides = {
            "device": {"preference": self.device.currentText().strip()},
            "experts": {
                "enabled": enabled,
                "backbone": self.backbone.currentText(),
                "clip_model": self.clip_model.text().strip(),
                "image_size": self.image_size.value(),
                "memory_budget": self.memory_budget.value(),
                "target_false_positive_rate": self.fpr.value(),
                "align": self.align.currentText(),
            },
            "explainer": {
                "kind": self.explainer.currentText(),
                "vlm": self.vlm.text().strip(),
                "max_new_tokens": self.max_tokens.value(),
                "use_reference_image": self.use_reference.isChecked(),
            },
            "review": {
                "reviewer": self.reviewer.text().strip(),
                "text_autosave_ms": self.autosave.value(),
            },
        }
        return merge(self.settings, overrides)

    def edited_bindings(self) -> dict[str, tuple[str, ...]]:
        result = {}
        for action, edits in self.key_edits.items():
            keys = tuple(e.keySequence().toString() for e in edits)
            result[action] = tuple(k for k in keys if k)
        problems = conflicts(result)
        if problems:
            raise UserError("; ".join(problems))
        return result

    def accept(self) -> None:
        try:
            settings = self.edited_settings()
            bindings = self.edited_bindings()
        except UserError as exc:
            QMessageBox.warning(self, "Settings", str(exc))
            return
        write_user_config(settings, self.SECTIONS)
        save_bindings(self.ws.store, bindings)
        old = self.ws.settings
        if (settings.explainer, settings.experts, settings.device) != (
            old.explainer,
            old.experts,
            old.device,
        ):
            unload_models(self.ws.model_lane, self.ws.models)
        self.ws.settings = settings
        self.bindings = bindings
        super().accept()
