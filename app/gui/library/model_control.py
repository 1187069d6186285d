"""Which model searches, and keeping its codes up to date.

The model picker lists the installed checkpoints (the shipped default and any trained ones).
Choosing one loads it off the GUI thread and then runs the incremental indexer with it, which
encodes only the photos that lack codes for that model; the codes of other models stay in the
catalog and loaded models stay in memory, so switching back is instant.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QSizePolicy,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
)

from app.gui.library.panel import LibraryPanel
from app.gui.workers import IndexJob, JobRunner
from engine.library import Library
from engine.model_files import default_checkpoint, installed_checkpoints, model_name
from engine.session import ActiveModel, IndexUpdate, activate_model

if TYPE_CHECKING:
    from engine.models import SketchHashModel

log = logging.getLogger(__name__)

MODEL_READY_MESSAGE = "Model ready"  # logged when a model becomes the active one
INJECTED = "@injected"  # spec of a model handed to the window (tests, embedding)
KEEP_LOADED = 4
COMBO_CHARACTERS = 16


class ModelCombo(QComboBox):
    """The model chooser: its items read "name (method, K-bit)"; closed, it shows the name,
    the part that tells models apart (the status bar has the rest)."""

    def paintEvent(self, event) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        option.currentText = option.currentText.split(" (")[0]
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)


class ModelControl(QObject):
    modelChanged = Signal()  # a new model is active (or none)
    searchableChanged = Signal()  # the searcher now holds a different number of photos
    statusChanged = Signal()  # loading/indexing started or stopped
    errorOccurred = Signal(object)

    def __init__(
        self, library: Library, runner: JobRunner, panel: LibraryPanel, parent: QObject
    ) -> None:
        super().__init__(parent)
        self.library = library
        self.runner = runner
        self.panel = panel
        self.active: ActiveModel | None = None
        self.status_text = ""
        self.index_job = IndexJob(runner, self)
        self._loaded: dict[str, ActiveModel] = {}
        self._loading: str | None = None
        self._auto_index = True
        self._index_again = False
        self._index_spec: str | None = None  # the model of the running (or last) indexing run
        self._index_error: BaseException | None = None  # why the running one stopped
        self._index_failed: dict[str, str] = {}  # spec -> why its last run stopped
        self.error_owner: tuple[str, str] | None = None  # of the error being emitted
        self.combo = ModelCombo()
        # a fixed width, so a long checkpoint name cannot push the toolbar into its overflow;
        # the list that drops down is as wide as its longest entry
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.combo.setMinimumContentsLength(COMBO_CHARACTERS)
        self.combo.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.combo.setToolTip("The model that encodes sketches and photos")
        self.combo.activated.connect(lambda i: self.switch(self.combo.itemData(i)))
        self.index_job.progressed.connect(self._on_index_progress)
        self.index_job.finished.connect(self._on_index_finished)
        self.index_job.failed.connect(self._on_index_failed)
        panel.indexRequested.connect(self.start_indexing)
        panel.cancelRequested.connect(self.index_job.cancel)
        self.reload_choices()

    # ----------------------------------------------------------------- choices
    def reload_choices(self) -> None:
        current = self.active.spec if self.active else None
        self.combo.clear()
        for info in installed_checkpoints():
            text = f"{model_name(info)} ({info.method}, {info.bits}-bit)"
            self.combo.addItem(text, str(info.path))
            self.combo.setItemData(
                self.combo.count() - 1, str(info.path), Qt.ItemDataRole.ToolTipRole
            )
        if current is not None:
            self._select(current)
        self._fit_popup()

    def _fit_popup(self) -> None:
        view = self.combo.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 2 * view.frameWidth() + 8)

    def _select(self, spec: str) -> None:
        index = self.combo.findData(spec)
        if index < 0:
            label = self.describe_active() if self.active else spec
            self.combo.insertItem(0, label, spec)
            index = 0
            self._fit_popup()
        self.combo.setCurrentIndex(index)
        self.combo.setToolTip(
            f"The model that encodes sketches and photos: {self.combo.itemText(index)}"
        )

    # ----------------------------------------------------------------- activation
    def start(self, model: SketchHashModel | None, spec: str, auto_index: bool = True) -> None:
        """First activation: an injected model, or the saved choice, or the shipped default."""
        self._auto_index = auto_index
        if model is not None:
            self._load(INJECTED, model)
            return
        if not spec and (default := default_checkpoint()) is not None:
            spec = str(default)
        self._load(spec, None)

    def switch(self, spec: str) -> None:
        if self.active is not None and spec == self.active.spec:
            return
        if spec in self._loaded:
            self._set_active(self._loaded[spec])  # instant: model and searcher are in memory
        else:
            self._load(spec, None)

    def _load(self, spec: str, model: SketchHashModel | None) -> None:
        self._loading = spec
        self.status_text = "Loading the model…"
        self.statusChanged.emit()
        slots = {
            "returned": self._on_loaded,
            "errored": lambda exc: self._on_load_failed(spec, exc),
        }
        self.runner.run_function(activate_model, self.library, spec, model, on=slots)

    def _on_loaded(self, active: ActiveModel) -> None:
        if active.spec != self._loading:
            return  # the user chose yet another model meanwhile
        self._loading = None
        self._loaded[active.spec] = active
        while len(self._loaded) > KEEP_LOADED:
            oldest = next(iter(self._loaded))
            if oldest == active.spec:
                break
            del self._loaded[oldest]
        self._set_active(active)

    def _on_load_failed(self, spec: str, exc: BaseException) -> None:
        if spec != self._loading:
            return
        self._loading = None
        self.status_text = (
            "No model could be loaded. Choose another one in the toolbar, or "
            "train one with 'sketch-search train'."
        )
        if self.active is not None:
            self._select(self.active.spec)
        self._emit_error(exc, ("model", spec))
        self.statusChanged.emit()

    def _set_active(self, active: ActiveModel) -> None:
        self.active = active
        self.status_text = ""
        log.info(
            "%s: %s on %s", MODEL_READY_MESSAGE, self.describe_active(), self.describe_device()
        )
        self._select(active.spec)
        self.modelChanged.emit()
        if self._auto_index and active.spec in self._index_failed:
            # its last run stopped with an error: say so again, but let the user retry (Index)
            # rather than running into the same error on every switch back to this model
            self.panel.set_failed(self._index_failed[active.spec])
        elif self._auto_index:
            self.start_indexing()
        self._auto_index = True  # only the first activation may skip the background refresh

    def describe_active(self) -> str:
        """The active model as the chooser lists it: its name, method and code length."""
        if self.active is None:
            return "No model"
        model = self.active.model
        return f"{model_name(model)} ({model.method}, {model.bits}-bit)"

    def _emit_error(self, exc: BaseException, owner: tuple[str, str]) -> None:
        """``errorOccurred`` with ``error_owner`` saying what it belongs to while it is
        delivered: ("model", spec) for a load, ("index", spec) for that model's indexing."""
        self.error_owner = owner
        try:
            self.errorOccurred.emit(exc)
        finally:
            self.error_owner = None

    def describe_device(self) -> str:
        if self.active is None:
            return ""
        from engine.devices import describe_device  # torch: loaded with the model already

        return describe_device(self.active.model.device)

    # ----------------------------------------------------------------- indexing
    def start_indexing(self) -> None:
        """Index new/changed photos, and encode those lacking codes for the active model."""
        if self.active is None or not self.library.roots():
            return
        if self.index_job.is_running():
            self._index_again = True  # e.g. a model switch or a new folder: run once more
            if self.index_job.model is not self.active.model:
                self.index_job.cancel()
            return
        self._index_again = False
        self._index_spec = self.active.spec
        self.index_job.start(self.library, self.active.model, self.active.searcher)
        self.panel.set_running(True)
        self.statusChanged.emit()

    def refresh_searchable(self) -> None:
        """Reload the active searcher's codes (e.g. a folder was removed), off the GUI thread."""
        if self.active is None:
            return
        spec = self.active.spec
        slots = {
            "returned": lambda _n: self.searchableChanged.emit(),
            "errored": lambda exc: self._emit_error(exc, ("index", spec)),
        }
        self.runner.run_function(self.active.searcher.refresh, on=slots)

    def _on_index_progress(self, update: IndexUpdate) -> None:
        self.panel.set_progress(update.progress)
        if update.refreshed is not None:
            self.searchableChanged.emit()

    def _on_index_failed(self, exc: BaseException) -> None:
        self._index_error = exc  # ``finished`` follows
        if self._index_spec is not None:
            self._index_failed[self._index_spec] = str(exc)
        self._emit_error(exc, ("index", self._index_spec or ""))

    def _on_index_finished(self, last) -> None:
        self.panel.set_running(False)
        error, self._index_error = self._index_error, None
        if error is not None:
            self.panel.set_failed(str(error))
        else:
            self._index_failed.pop(self._index_spec, None)
            if last is not None:
                self.panel.set_progress(last)
        self.panel.refresh_failures()
        self.statusChanged.emit()
        if self._index_again:
            self.start_indexing()
