"""The review window: a shell of docks, actions and the status bar.

It builds the widgets, binds the keys and forwards each action to the
:class:`~workstation.gui.review_controller.ReviewController` or a screen of its own module;
no review logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from workstation import device
from workstation.core import kinds
from workstation.core.errors import UserError
from workstation.core.types import Product
from workstation.gui.app import Workstation
from workstation.gui.canvas import Canvas
from workstation.gui.cheat_sheet import CheatSheet
from workstation.gui.colorbar import ColorBar
from workstation.gui.explanation_panel import ExplanationPanel
from workstation.gui.fault_dialog import TITLE
from workstation.gui.image_list import ImageListModel, ImageListPanel
from workstation.gui.review_controller import PRODUCT_KEY, ReviewController
from workstation.gui.shortcuts import ACTIONS, load_bindings
from workstation.gui.theme import app_icon
from workstation.gui.type_drafts import TypeDraftsFollower
from workstation.gui.view_toolbar import ViewToolbar
from workstation.gui.window_layout import (
    CANVAS_SHARE,
    ShareSplitter,
    caption,
    fit_side_docks,
    keep_name_readable,
    place_engineer_dock,
    restore_layout,
    save_layout,
    scrollable,
)
from workstation.gui.zoom_view import ReferenceView


class MainWindow(QMainWindow):
    def __init__(self, workstation: Workstation, *, product: str | None = None) -> None:
        super().__init__()
        self.ws = workstation
        self.setWindowTitle("IAD Workstation")
        self.setWindowIcon(app_icon())
        self.resize(1500, 900)
        self.bindings = load_bindings(workstation.store)
        self.canvas = Canvas()
        self.colorbar = ColorBar()
        self.reference = ReferenceView()
        self.explanation = ExplanationPanel(workstation.settings.review.text_autosave_ms)
        self.list_model = ImageListModel()
        self.image_list = ImageListPanel(self.list_model)
        self.toolbar = ViewToolbar(self)
        self.addToolBar(self.toolbar)
        self.controller = ReviewController(
            io_lane=workstation.io_lane,
            model_lane=workstation.model_lane,
            models=workstation.models,
            explainer_settings=lambda: workstation.settings.explainer,
            canvas=self.canvas,
            reference=self.reference,
            panel=self.explanation,
            model=self.list_model,
            undo_depth=workstation.settings.review.undo_depth,
            parent=self,
        )
        self._build_central()
        self._build_docks()
        self._build_status_bar()
        self.actions_by_id: dict[str, QAction] = {}
        self._build_actions()
        self._build_menus()
        self._wire()
        self.models_dock: QDockWidget | None = None
        self.type_drafts = TypeDraftsFollower(self.controller, self.show_message)  # kind: types
        self.models_panel: Any = None
        self.threshold_dock: QDockWidget | None = None
        self.threshold_panel: Any = None
        self._restore_layout()
        self._resolve_device()
        self.open_product(product)

    # -- layout ------------------------------------------------------------------------------
    def _build_central(self) -> None:
        reference_box = QWidget()
        layout = QVBoxLayout(reference_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.reference_caption = caption("Normal reference")
        layout.addWidget(self.reference_caption)
        layout.addWidget(self.reference, 1)
        canvas_box = QWidget()
        layout = QVBoxLayout(canvas_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.canvas_caption = caption("")
        layout.addWidget(self.canvas_caption)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.colorbar)
        self.splitter = ShareSplitter(CANVAS_SHARE)
        self.splitter.addWidget(canvas_box)
        self.splitter.addWidget(reference_box)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 1)
        self.reference_box = reference_box
        self.setCentralWidget(self.splitter)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        # side docks run the full height; the models dock sits under the canvas only
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.list_dock = self._dock(
            "Images", "images", self.image_list, Qt.DockWidgetArea.LeftDockWidgetArea
        )
        self.text_dock = self._dock(
            "Explanation", "explanation", self.explanation, Qt.DockWidgetArea.RightDockWidgetArea
        )
        keep_name_readable(self.list_dock, self.image_list.table)
        self._fit_docks_once = True

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.product_label = QLabel("No product")
        self.version_label = QLabel("model: none")
        self.device_label = QLabel("device: …")
        self.progress_label = QLabel("0 / 0 reviewed")
        self.cursor_label = QLabel("")
        self.lane_progress = QProgressBar()
        self.lane_progress.setFixedWidth(180)
        self.lane_progress.setVisible(False)
        self.lane_cancel = QPushButton("Cancel")
        self.lane_cancel.setVisible(False)
        for label in (
            self.cursor_label,
            self.product_label,
            self.version_label,
            self.device_label,
            self.progress_label,
        ):
            label.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Preferred)
        for widget in (
            self.lane_progress,
            self.lane_cancel,
            self.cursor_label,
            self.product_label,
            self.version_label,
            self.device_label,
            self.progress_label,
        ):
            bar.addPermanentWidget(widget)

    def _build_actions(self) -> None:
        c = self.controller
        handlers: dict[str, Callable[[], Any]] = {
            "accept": lambda: c.review("accepted"),
            "normal": lambda: c.review("normal"),
            "anomalous": lambda: c.review("anomalous"),
            "skip": lambda: c.review("skipped"),
            "next": c.next,
            "previous": c.previous,
            "brush": lambda: self.set_tool("brush"),
            "eraser": lambda: self.set_tool("eraser"),
            "polygon": lambda: self.set_tool("polygon"),
            "lasso": lambda: self.set_tool("lasso"),
            "fill": lambda: self.set_tool("fill"),
            "pan": lambda: self.set_tool("pan"),
            "smaller": lambda: self.canvas.change_brush(-1),
            "bigger": lambda: self.canvas.change_brush(+1),
            "from_heatmap": c.mask_from_heatmap,
            "clear_mask": c.clear_mask,
            "undo": c.undo,
            "redo": c.redo,
            "toggle_heatmap": lambda: self.toolbar.heatmap.toggle(),
            "heat_opacity": lambda: self.toolbar.cycle_opacity(self.canvas.heat_opacity),
            "colormap": lambda: self.toolbar.cycle_colormap(self.canvas.colormap),
            "toggle_mask": lambda: self.toolbar.mask.toggle(),
            "toggle_reference": lambda: self.toolbar.reference.toggle(),
            "fit": self.canvas.fit,
            "one_to_one": self.canvas.one_to_one,
            "focus_text": self.explanation.focus_text,
            "redraft": c.redraft,
            "inspect": self.inspect_new,
            "cheat_sheet": self.show_cheat_sheet,
        }
        for spec in ACTIONS:
            action = QAction(spec.label, self)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(handlers[spec.id])
            self.addAction(action)
            self.actions_by_id[spec.id] = action
        self.apply_bindings(self.bindings)

    def apply_bindings(self, bindings: dict[str, tuple[str, ...]]) -> None:
        self.bindings = bindings
        for action_id, action in self.actions_by_id.items():
            action.setShortcuts([QKeySequence(k) for k in bindings.get(action_id, ()) if k])

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.products_menu = file_menu.addMenu("Switch product")
        self._add(file_menu, "New product…", "Ctrl+N", self.show_onboarding)
        self._add(file_menu, "Models and training…", "Ctrl+M", self.show_models)
        self._add(file_menu, "Threshold and scores…", "Ctrl+T", self.show_threshold)
        self._add(file_menu, "Settings…", "Ctrl+,", self.show_settings)
        file_menu.addSeparator()
        self._add(file_menu, "Quit", "Ctrl+Q", self.close)
        groups: dict[str, Any] = {}
        for spec in ACTIONS:
            name = {"Help": "&Help", "Review": "&Review", "Mask": "&Mask", "View": "&View"}[
                spec.group
            ]
            if name not in groups:
                groups[name] = menu.addMenu(name)
            groups[name].addAction(self.actions_by_id[spec.id])

    def _add(self, menu: Any, text: str, key: str, handler: Callable[[], Any]) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(key))
        action.triggered.connect(handler)
        menu.addAction(action)
        return action

    def _wire(self) -> None:
        c, t, canvas = self.controller, self.toolbar, self.canvas
        t.tool_chosen.connect(self.set_tool)
        t.brush.valueChanged.connect(self._set_brush)
        canvas.brush_size_changed.connect(t.brush.setValue)
        t.heatmap.toggled.connect(canvas.set_heat_visible)
        t.opacity.valueChanged.connect(lambda v: canvas.set_heat_opacity(v / 100))
        t.colormap.currentTextChanged.connect(canvas.set_colormap)
        t.colormap.currentTextChanged.connect(self.colorbar.set_colormap)
        t.heatmap.toggled.connect(self.colorbar.setVisible)
        canvas.hover_score.connect(self._show_hover_score)
        t.contour.toggled.connect(canvas.set_contour_visible)
        t.mask.toggled.connect(canvas.set_mask_visible)
        t.reference.toggled.connect(self.reference_box.setVisible)
        self.image_list.table.clicked.connect(lambda index: c.select_row(index.row()))
        self.image_list.filter_changed.connect(c.set_filter)
        self.image_list.filter_error.connect(self.show_message)
        c.image_shown.connect(self._on_image_shown)
        c.progress_changed.connect(
            lambda done, total: self.progress_label.setText(f"{done} / {total} reviewed")
        )
        c.message.connect(self.show_message)
        c.fault.connect(lambda line: QMessageBox.warning(self, TITLE, line))
        self.lane_cancel.clicked.connect(lambda: self.ws.model_lane.cancel("inspect"))

    # -- products ---------------------------------------------------------------------------------
    def open_product(self, name: str | None = None) -> None:
        store = self.ws.store
        products = store.list_products()
        self._fill_products_menu(products)
        if not products:
            self.product_label.setText("No product yet: File ▸ New product (Ctrl+N)")
            return
        wanted = name or store.get_state(PRODUCT_KEY)
        try:
            product = store.get_product(wanted) if wanted else products[0]
        except UserError as exc:
            if name:  # asked for by name on the command line: say why it is not there
                self.show_message(str(exc))
            product = products[0]
        self._open(product)

    def _open(self, product: Product) -> None:
        service = self.ws.review_service(product)
        self.image_list.set_defect_types(service.defect_types())
        self.controller.open_product(service)
        self.image_list.set_filter(self.list_model.filter)
        self.product_label.setText(f"Product: {product.name}")
        self.setWindowTitle(f"{product.name} · IAD Workstation")
        self._show_version(product)
        self.type_drafts.opened(product)  # kind: types (issue 22)

    def _fill_products_menu(self, products: list[Product]) -> None:
        self.products_menu.clear()
        for product in products:
            action = self.products_menu.addAction(product.name)
            action.triggered.connect(lambda _=False, p=product: self._open(p))

    def _show_version(self, product: Product) -> None:
        store = self.ws.store
        names = [
            v.name
            for kind in (kinds.EXPERTS, *(k.name for k in kinds.experts()))
            if (v := store.active_model_version(product.id, kind))
        ]
        self.version_label.setText("model: " + (" + ".join(names) if names else "none"))

    # -- small actions ----------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        self.canvas.set_tool(tool)  # type: ignore[arg-type]
        self.toolbar.show_tool(tool)

    def _set_brush(self, size: int) -> None:
        if self.canvas.editor is not None and self.canvas.editor.brush_size != size:
            self.canvas.editor.set_brush_size(size)

    def _on_image_shown(self, _image_id: int) -> None:
        current = self.controller.current
        if current is None:
            return
        detail = current.detail
        record = detail.record
        score = f"score {detail.prediction.score:.3f}" if detail.prediction else "not inspected"
        review = detail.review.verdict if detail.review else "unreviewed"
        folder = record.path.replace("\\", "/").rsplit("/", 2)[-2:-1]
        parts = ("/".join([*folder, record.name]), f"{record.width}×{record.height}", score, review)
        self.canvas_caption.setText("   ·   ".join(parts))
        self.colorbar.set_display(current.content.heatmap)
        self.canvas_caption.setToolTip("   ·   ".join(parts))  # the pane may clip it
        self.image_list.table.selectRow(self.controller.current_row)
        self.image_list.table.scrollTo(self.list_model.index(self.controller.current_row, 0))
        if self.canvas.editor is not None:
            self.toolbar.brush.setValue(self.canvas.editor.brush_size)

    def _show_hover_score(self, value: float | None) -> None:
        self.colorbar.set_cursor(value)
        self.cursor_label.setText("" if value is None else f"under cursor: {value:.2f}")

    def inspect_new(self) -> None:
        """Run the experts over images without a prediction; progress and cancel in the bar."""
        self.lane_progress.setRange(0, 0)
        self.lane_progress.setVisible(True)
        self.lane_cancel.setVisible(True)

        def progress(done: int, total: int, _message: str) -> None:
            self.lane_progress.setRange(0, max(1, total))
            self.lane_progress.setValue(done)

        def finished(message: str) -> None:
            self.lane_progress.setVisible(False)
            self.lane_cancel.setVisible(False)
            self.show_message(message)
            if self.controller.product is not None:
                self._show_version(self.controller.product)

        self.controller.inspect_new(
            self.ws.settings.experts,
            self.ws.settings.device.preference,
            on_progress=progress,
            on_done=finished,
        )

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def _resolve_device(self) -> None:
        preference = self.ws.settings.device.preference
        if preference == "cpu" or (preference == "auto" and not device.cuda_driver_present()):
            # no torch import just for the label: it takes seconds, and quitting soon after
            # start would have to wait for it
            self.device_label.setText("device: CPU")
            return

        def job(_p: Any, _c: Any) -> str:
            from workstation.device import describe_device, resolve_device

            return describe_device(resolve_device(preference))

        self.ws.model_lane.submit(
            job,
            channel="device",
            on_result=lambda name: self.device_label.setText(f"device: {name}"),
            on_error=lambda exc: self.device_label.setText(f"device: {exc}"),
        )

    # -- other screens ---------------------------------------------------------------------------
    def show_cheat_sheet(self) -> None:
        CheatSheet(self.bindings, self).exec()

    def show_onboarding(self) -> None:
        from workstation.gui.onboarding import OnboardingWizard

        wizard = OnboardingWizard(self.ws, self)
        if wizard.exec() and wizard.product is not None:
            self.open_product(wizard.product.name)
            if wizard.teach_expert:
                self.show_models()
                self.models_panel.start_round("selftaught")

    def _engineer_dock(
        self, name: str, title: str, panel: Any, dock: Any, build: Callable[[Product], Any]
    ) -> tuple[Any, Any]:
        """(panel, dock) ``name`` for the open product, built anew after a product switch,
        under the canvas (``place_engineer_dock``), shown and raised."""
        product = self.controller.product
        if product is None:
            self.show_message("open or create a product first")
            return panel, dock
        if panel is not None and panel.product.id != product.id:
            if hasattr(panel, "shutdown"):
                panel.shutdown()
            self.removeDockWidget(dock)
            panel = dock = None
        if dock is None:
            panel = build(product)
            area = Qt.DockWidgetArea.BottomDockWidgetArea
            dock = self._dock(title, name, scrollable(panel), area)
            place_engineer_dock(self, dock, self.canvas, self.text_dock)
        dock.show()
        dock.raise_()
        return panel, dock

    def show_models(self) -> None:
        from workstation.gui.models_panel import ModelsPanel

        def build(product: Product) -> ModelsPanel:
            panel = ModelsPanel(self.ws, product, self)
            panel.versions_changed.connect(lambda: self._show_version(product))
            panel.versions_changed.connect(lambda: self.type_drafts.versions_changed(product))
            # a round that promoted a model changes what the experts see: score again
            panel.round_finished.connect(self._after_round)
            return panel

        self.models_panel, self.models_dock = self._engineer_dock(
            "models", "Models and training", self.models_panel, self.models_dock, build
        )

    def show_threshold(self) -> None:
        """The product's score histogram with its threshold to drag."""
        from workstation.gui.threshold_panel import ThresholdPanel

        def build(product: Product) -> ThresholdPanel:
            panel = ThresholdPanel(self.ws, product, self)
            panel.threshold_saved.connect(self._threshold_saved)
            return panel

        self.threshold_panel, self.threshold_dock = self._engineer_dock(
            "threshold", "Threshold", self.threshold_panel, self.threshold_dock, build
        )

    def _threshold_saved(self, value: float) -> None:
        """The queue's flags, the contour and the colour range follow the new threshold."""
        self._open(self.ws.store.get_product(self.controller.product.id))
        self.show_message(f"threshold set to {value:.2f}; the queue is flagged again")

    def _after_round(self, message: str) -> None:
        if message.startswith("promoted"):
            self.inspect_new()

    def show_settings(self) -> None:
        from workstation.gui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.ws, self.bindings, self)
        if dialog.exec():
            self.apply_bindings(dialog.bindings)

    # -- layout persistence ---------------------------------------------------------------------
    def _restore_layout(self) -> None:
        if restore_layout(self, self.ws.store, self.splitter):
            self._fit_docks_once = False  # the inspector's own widths win

    def save_layout(self) -> None:
        save_layout(self, self.ws.store, self.splitter)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._fit_docks_once:  # the window's real width is known only now
            self._fit_docks_once = False
            fit_side_docks(self, self.list_dock, self.text_dock)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.isVisible():  # a second close (or one never shown) has no layout to keep
            self.save_layout()
        self.controller.shutdown()
        if self.models_panel is not None:
            self.models_panel.shutdown()
        super().closeEvent(event)
