"""Onboarding wizard for a new product type.

Name and description, normality rules and defect words, then a few normal images (one is
enough to start) and optional defect images; the experts are fitted on the model lane with
progress and cancel, and the last page shows a preview grid with scores, the chosen
threshold and the readiness note from ``services.onboard``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from workstation.core.errors import CancelledError, UserError
from workstation.core.types import Product
from workstation.faults import user_message
from workstation.gui.app import Workstation
from workstation.gui.render import rgb_qimage
from workstation.gui.workers import CancelToken, ProgressFn, exclusive_model_job
from workstation.services.model_jobs import OnboardRequest, onboard_from_files
from workstation.services.phases import PhaseClock

THUMB = 150
TEACH_TEXT = "Teach the self-taught expert now, in the background (up to 8 min on a CPU)"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff)"


@dataclass(frozen=True)
class PreviewItem:
    path: str
    score: float
    anomalous: bool
    thumbnail: QImage
    """Built on the worker (QImage is thread-safe), shown as an icon."""
    is_reference: bool


@dataclass(frozen=True)
class OnboardOutcome:
    product: Product
    threshold: float | None
    readiness: str
    previews: tuple[PreviewItem, ...]


Runner = Callable[[Workstation, OnboardRequest, ProgressFn, CancelToken], OnboardOutcome]


def thumbnail(path: str, side: int = THUMB) -> QImage:
    import cv2

    from workstation.core.imageio import read_image

    rgb = read_image(path, max_side=side * 2)
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    small = cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    return rgb_qimage(small)


def run_onboarding(
    ws: Workstation, request: OnboardRequest, progress: ProgressFn, cancel: CancelToken
) -> OnboardOutcome:
    """Model-lane job: the onboarding use case (``services.model_jobs``), then a thumbnail
    of every scored shot for the preview grid."""
    fit = onboard_from_files(
        ws.store,
        request,
        ws.settings.experts,
        device_preference=ws.settings.device.preference,
        cancel=cancel.event,
        progress=progress,
    )
    previews: list[PreviewItem] = []
    clock = PhaseClock(progress)
    for shot in fit.shots:
        cancel.raise_if_cancelled()
        clock(len(previews), len(fit.shots), "preparing the preview")
        previews.append(
            PreviewItem(
                path=shot.path,
                score=shot.score,
                anomalous=shot.anomalous,
                thumbnail=thumbnail(shot.path),
                is_reference=shot.is_reference,
            )
        )
    product = fit.result.product
    return OnboardOutcome(product, product.threshold, fit.note, tuple(previews))


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip(" -•\t") for line in text.splitlines() if line.strip(" -•\t"))


class ProductPage(QWizardPage):
    def __init__(self, ws: Workstation) -> None:
        super().__init__()
        self.ws = ws
        self.created: set[str] = set()
        self.setTitle("New product type")
        self.setSubTitle("What is inspected, in the words the explanations should use.")
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. ball-screw-drive")
        self.description = QPlainTextEdit()
        self.description.setPlaceholderText(
            "e.g. a polished steel ball screw drive, seen from the side"
        )
        self.error = QLabel("")
        self.error.setObjectName("muted")
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("Description", self.description)
        form.addRow("", self.error)
        self.name.textChanged.connect(self.completeChanged)

    def isComplete(self) -> bool:
        name = self.name.text().strip()
        mine = name in self.created  # made by an earlier, cancelled run of this wizard
        taken = bool(name) and not mine and self.ws.store.find_product(name) is not None
        self.error.setText(f"a product called {name!r} already exists" if taken else "")
        return bool(name) and not taken


class RulesPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("What is normal, what can go wrong")
        self.setSubTitle("One rule or defect word per line; both can be changed later.")
        self.rules = QPlainTextEdit()
        self.rules.setPlaceholderText(
            "the thread is evenly spaced\nsmall dust specks are acceptable"
        )
        self.vocabulary = QPlainTextEdit()
        self.vocabulary.setPlaceholderText("pitting\nscratch\ndent")
        form = QFormLayout(self)
        form.addRow("Normality rules", self.rules)
        form.addRow("Defect types", self.vocabulary)


class _PathList(QWidget):
    def __init__(self, title: str, page: QWizardPage) -> None:
        super().__init__()
        self.page = page
        self.list = QListWidget()
        add, folder, remove = (
            QPushButton("Add images…"),
            QPushButton("Add folder…"),
            QPushButton("Remove"),
        )
        add.clicked.connect(self._pick_files)
        folder.clicked.connect(self._pick_folder)
        remove.clicked.connect(self._remove)
        buttons = QHBoxLayout()
        for button in (add, folder, remove):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel(title))
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

    def paths(self) -> tuple[Path, ...]:
        return tuple(
            Path(self.list.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(self.list.count())
        )

    def add(self, paths: Sequence[Path | str]) -> None:
        known = set(self.paths())
        for raw in paths:
            path = Path(raw)
            if path not in known:
                item = QListWidgetItem(f"{path.parent.name}/{path.name}")
                item.setData(Qt.ItemDataRole.UserRole, str(path))
                item.setToolTip(str(path))
                self.list.addItem(item)
                known.add(path)
        self.page.completeChanged.emit()

    def _pick_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Choose images", "", IMAGE_FILTER)
        self.add(files)

    def _pick_folder(self) -> None:
        from workstation.core.imageio import is_image_file

        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of images")
        if folder:
            self.add(sorted(p for p in Path(folder).iterdir() if is_image_file(p)))

    def _remove(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))
        self.page.completeChanged.emit()


class ImagesPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Example images")
        self.setSubTitle(
            "Normal images are the reference: one is enough to start, 4 to 16 make the threshold "
            "steadier. Defect images are optional and only check the threshold."
        )
        self.normals = _PathList("Normal images (required)", self)
        self.defects = _PathList("Defect images (optional)", self)
        row = QHBoxLayout(self)
        row.addWidget(self.normals)
        row.addWidget(self.defects)

    def isComplete(self) -> bool:
        return bool(self.normals.paths())


class RunPage(QWizardPage):
    """Runs the experts on the model lane; shows progress, then the preview grid."""

    def __init__(self, wizard: OnboardingWizard) -> None:
        super().__init__()
        self.wiz = wizard
        self.setTitle("Fitting the experts")
        self.setSubTitle("The experts learn the normal images, then score every example.")
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self.cancel_run)
        self.threshold = QLabel("")
        self.readiness = QLabel("")
        self.readiness.setObjectName("readiness")
        self.readiness.setWordWrap(True)
        self.readiness.setVisible(False)
        self.teach = QCheckBox(TEACH_TEXT)
        self.teach.setChecked(True)
        self.teach.setToolTip(
            "A small network learns this product's normal look from its normal images and "
            "synthetic defects, as a training round (Models dock: progress, cancel, roll back). "
            "It is promoted only if it adds no false alarms on normals it never saw, and the "
            "list is scored again when it is. A GPU takes a minute or two."
        )
        self.teach.setVisible(False)
        self.grid = QListWidget()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(THUMB, THUMB))
        self.grid.setGridSize(QSize(THUMB + 30, THUMB + 48))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.progress, 1)
        top.addWidget(self.cancel)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.threshold)
        layout.addWidget(self.grid, 1)
        layout.addWidget(self.readiness)
        layout.addWidget(self.teach)
        self.outcome: OnboardOutcome | None = None
        self.running = False
        self._job: Any = None

    def initializePage(self) -> None:
        self.outcome = None
        self.grid.clear()
        self.readiness.setVisible(False)
        self.teach.setVisible(False)
        self.threshold.setText("")
        self.progress.setRange(0, 0)
        ws = self.wiz.ws
        # a job already on the model lane (an inspection, a draft) runs first: say so, or
        # the page seems stuck before its first phase
        self.status.setText(
            "Waiting for the running model job (inspection or drafting) to finish…"
            if ws.model_lane.busy
            else "Starting…"
        )
        self.running = True
        self.cancel.setEnabled(True)
        request = self.wiz.request()
        self.wiz.product_page.created.add(request.name)
        runner = self.wiz.runner
        self._job = ws.model_lane.submit(
            exclusive_model_job(
                ws.models, lambda progress, cancel: runner(ws, request, progress, cancel)
            ),
            channel="onboard",
            on_result=self._done,
            on_error=self._failed,
            on_progress=self._progress,
        )
        self.completeChanged.emit()

    def cancel_run(self) -> None:
        if self.running:
            self.wiz.ws.model_lane.cancel("onboard")
            self.status.setText("Cancelling…")

    def _progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self.status.setText(message or f"{done} / {total}")

    def _done(self, outcome: OnboardOutcome) -> None:
        self.running = False
        self.outcome = outcome
        self.wiz.product = outcome.product
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.cancel.setEnabled(False)
        self.status.setText(f"Product {outcome.product.name} is ready for review.")
        level = "not set" if outcome.threshold is None else f"{outcome.threshold:.2f}"
        self.threshold.setText(
            f"Chosen threshold: <b>{level}</b> (scores are calibrated: 1.00 is the threshold)"
        )
        # wide camera frames (1240 x 500) make short thumbnails: rows as tall as they are
        tallest = max((item.thumbnail.height() for item in outcome.previews), default=THUMB)
        self.grid.setIconSize(QSize(THUMB, tallest))
        self.grid.setGridSize(QSize(THUMB + 30, tallest + 48))
        for item in outcome.previews:
            role = (
                "reference" if item.is_reference else ("anomalous" if item.anomalous else "normal")
            )
            entry = QListWidgetItem(
                QIcon(QPixmap.fromImage(item.thumbnail)), f"{item.score:.3f} · {role}"
            )
            entry.setToolTip(item.path)
            entry.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.grid.addItem(entry)
        self.readiness.setText(outcome.readiness)
        self.readiness.setVisible(bool(outcome.readiness))
        self.teach.setVisible(True)
        self.completeChanged.emit()

    def _failed(self, exc: BaseException) -> None:
        self.running = False
        self.cancel.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        if isinstance(exc, CancelledError):
            self.status.setText("Cancelled. Go back to change the images, or close the wizard.")
        elif isinstance(exc, UserError):
            self.status.setText(str(exc))
        else:  # a storage fault in words with its fix, or a bug (the lane logged it)
            line, _ = user_message(exc, store=self.wiz.ws.store.path, logged=True)
            self.status.setText(f"Onboarding failed: {line}")
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.outcome is not None and not self.running

    def validatePage(self) -> bool:
        return self.isComplete()


class OnboardingWizard(QWizard):
    def __init__(
        self, ws: Workstation, parent: QWidget | None = None, *, runner: Runner = run_onboarding
    ) -> None:
        super().__init__(parent)
        self.ws = ws
        self.runner = runner
        self.product: Product | None = None
        self.setWindowTitle("New product")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.resize(900, 640)
        self.product_page = ProductPage(ws)
        self.rules_page = RulesPage()
        self.images_page = ImagesPage()
        self.run_page = RunPage(self)
        for page in (self.product_page, self.rules_page, self.images_page, self.run_page):
            self.addPage(page)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Start reviewing")

    def request(self) -> OnboardRequest:
        return OnboardRequest(
            name=self.product_page.name.text().strip(),
            description=self.product_page.description.toPlainText().strip(),
            normality_rules=_lines(self.rules_page.rules.toPlainText()),
            defect_vocabulary=_lines(self.rules_page.vocabulary.toPlainText()),
            normal_paths=self.images_page.normals.paths(),
            defect_paths=self.images_page.defects.paths(),
        )

    @property
    def teach_expert(self) -> bool:
        """Start a self-taught round once the wizard closes (the user's choice)."""
        return self.run_page.outcome is not None and self.run_page.teach.isChecked()

    def reject(self) -> None:
        if self.run_page.running:
            self.run_page.cancel_run()
        super().reject()
