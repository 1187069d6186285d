"""The main window: canvas on the left, results on the right, the library in a dock, the model
picker and sketch tools in the toolbar, and the search/model/index state in the status bar."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QSpinBox,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.gui import sketch_io
from app.gui.canvas import SketchCanvas
from app.gui.errors import MessageBar, user_message, write_crash_log
from app.gui.library_panel import LibraryPanel
from app.gui.model_control import INJECTED, ModelControl
from app.gui.results import ResultsModel, ResultsView
from app.gui.search_controller import SearchController
from app.gui.settings import app_settings
from app.gui.thumbnails import ThumbnailLoader
from app.gui.workers import JobRunner
from engine.defaults import DEFAULT_EXPAND
from engine.errors import SketchSearchError
from engine.library import Library

if TYPE_CHECKING:  # the window is built before torch is imported (start-up time)
    from app.gui.training_panel import TrainingPanel
    from engine.models import SketchHashModel
    from engine.searcher import SearchResponse

log = logging.getLogger(__name__)

TIMING_STAGES = ("normalize", "encode", "search", "lookup")


def format_timings(timings: dict[str, float]) -> str:
    stages = " · ".join(f"{k} {timings[k]:.0f}" for k in TIMING_STAGES if k in timings)
    return f"Query {timings.get('total', 0):.0f} ms ({stages})"


class MainWindow(QMainWindow):
    """``library``/``model``/``settings`` may be injected (tests); otherwise the defaults load.

    ``start_model`` False leaves loading the model to a later ``start_model()`` call: the app
    shows its window first (``app.gui.run_gui``), since loading imports torch.
    """

    crashReported = Signal(str)  # from any thread; shown on the GUI thread

    def __init__(
        self,
        library: Library | None = None,
        model: SketchHashModel | None = None,
        settings: QSettings | None = None,
        auto_index: bool = True,
        parent: QWidget | None = None,
        start_model: bool = True,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("SketchSearch")
        self.settings = settings or app_settings()
        self._owns_library = library is None
        self.library = library or Library()
        self.runner = JobRunner(self)
        self.thumbnails = ThumbnailLoader(self)
        self.message_bar = MessageBar()
        self._offered: tuple[str, int] | None = None  # the not-indexed offer last shown
        self.crashReported.connect(self.message_bar.show_error)

        self.canvas = SketchCanvas()
        self.results_model = ResultsModel(self.thumbnails, self)
        self.results_view = ResultsView(self.thumbnails)
        self.results_view.setModel(self.results_model)
        self.results_view.errorOccurred.connect(self.message_bar.show_error)
        self.search = SearchController(self.runner, self.canvas.query, self)
        self.canvas.sketchChanged.connect(self.search.sketch_changed)
        self.canvas.sketchChanged.connect(self.update_empty_state)
        self.search.resultsReady.connect(self._show_results)
        self.search.searchFailed.connect(self.show_error)
        self.search.cleared.connect(lambda: self._show_results(None))

        self.library_panel = LibraryPanel(self.library)
        self.library_panel.errorOccurred.connect(self.message_bar.show_error)
        self.models = ModelControl(self.library, self.runner, self.library_panel, self)
        self.models.modelChanged.connect(self._on_model_changed)
        self.models.searchableChanged.connect(self._on_searchable_changed)
        self.models.errorOccurred.connect(self.show_error)
        self.models.statusChanged.connect(self.update_empty_state)
        self.models.statusChanged.connect(self._offer_indexing)
        self.library_panel.foldersChanged.connect(self._on_folders_changed)

        self._build_layout()
        self._build_toolbar()
        self._build_status_bar()
        self._restore_settings()
        self.update_empty_state()
        self.training_panel: TrainingPanel | None = None  # made when first opened
        self.imagine_dock = None  # made when first opened (app.gui.imagine_view)
        self._first_model = (model, auto_index)
        if start_model:
            self.start_model()

    def start_model(self) -> None:
        """Load the injected model, else the saved choice, else the shipped default (off the
        GUI thread), then index with it."""
        model, auto_index = self._first_model
        self.models.start(model, self.settings.value("model", "", str), auto_index=auto_index)

    # ----------------------------------------------------------------- construction
    def _build_layout(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.canvas)
        splitter.addWidget(self.results_view)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        self.splitter = splitter
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.message_bar)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(central)
        dock = QDockWidget("Library", self)
        dock.setObjectName("libraryDock")
        dock.setWidget(self.library_panel)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if isinstance(shortcut, QKeySequence.StandardKey):
            action.setShortcuts(shortcut)  # every binding the platform has
        elif shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(f"{tip or text} ({keys})" if keys else tip or text)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_toolbar(self) -> None:
        bar = QToolBar("Sketch", self)
        bar.setObjectName("sketchToolbar")
        self.addToolBar(bar)
        stack = self.canvas.undo_stack
        self.undo_action = self._action("Undo", stack.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("Redo", stack.redo)
        stack.canUndoChanged.connect(self.undo_action.setEnabled)
        stack.canRedoChanged.connect(self.redo_action.setEnabled)
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        redo_keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)
        for extra in ("Ctrl+Shift+Z", "Ctrl+Y"):  # both, whatever the platform's standard is
            if QKeySequence(extra) not in redo_keys:
                redo_keys.append(QKeySequence(extra))
        self.redo_action.setShortcuts(redo_keys)
        self.redo_action.setToolTip(f"Redo ({redo_keys[0].toString()})")
        self.open_action = self._action("Open…", self._choose_sketch, QKeySequence.StandardKey.Open)
        self.save_png_action = self._action("Save PNG…", self._choose_png, "Ctrl+S")
        self.save_strokes_action = self._action(
            "Save strokes…", self._choose_strokes, "Ctrl+Shift+S"
        )
        self.paste_action = self._action(
            "Paste", self.paste, QKeySequence.StandardKey.Paste, "Search with the clipboard's image"
        )
        self.clear_action = self._action("Clear", self.canvas.clear, "Ctrl+Backspace")
        self.pen_action = self._action("Pen", lambda: self._set_eraser(False), "P")
        self.eraser_action = self._action("Eraser", lambda: self._set_eraser(True), "E")
        tools = QActionGroup(self)
        for action in (self.pen_action, self.eraser_action):
            action.setCheckable(True)
            tools.addAction(action)
        self.pen_action.setChecked(True)
        self.width_spin = QSpinBox(minimum=1, maximum=40, value=3, suffix=" px")
        self.width_spin.setToolTip("Pen width")
        self.width_spin.valueChanged.connect(lambda v: setattr(self.canvas, "pen_width", float(v)))
        self.count_spin = QSpinBox(minimum=1, maximum=1000, value=50, singleStep=10)
        self.count_spin.setToolTip("How many results to show")
        self.count_spin.valueChanged.connect(self.search.set_count)
        self.rerank_action = self._action(
            "Re-rank",
            self.search.set_rerank,
            tip="Re-order the top 100 by the model's exact distance (models that have one: DSSA)",
        )
        self.rerank_action.setCheckable(True)
        self.expand_spin = QSpinBox(minimum=0, maximum=50, value=DEFAULT_EXPAND)
        self.expand_spin.setSpecialValueText("off")
        self.expand_spin.setToolTip(
            "Query expansion: search again with the code your sketch and its N nearest photos "
            "vote on (off: search with the sketch's own code)"
        )
        self.expand_spin.valueChanged.connect(self.search.set_expand)
        self.model_combo: QComboBox = self.models.combo
        self.train_action = self._action(
            "Train…", self.show_training_panel, "Ctrl+T", "Train a model on a data set folder"
        )
        self.imagine_action = self._action(
            "Imagine", self.show_imagine_view, "Ctrl+I", "Show the photo the model imagines (GDH)"
        )
        for item in (
            self.open_action,
            self.save_png_action,
            self.save_strokes_action,
            self.paste_action,
            None,
            self.pen_action,
            self.eraser_action,
            "Width",
            self.width_spin,
            self.undo_action,
            self.redo_action,
            self.clear_action,
            None,
            "Model",
            self.model_combo,
            self.train_action,
            self.imagine_action,
            "Results",
            self.count_spin,
            self.rerank_action,
            "Expand",
            self.expand_spin,
        ):
            if item is None:
                bar.addSeparator()
            elif isinstance(item, str):
                bar.addWidget(QLabel(f" {item} "))
            elif isinstance(item, QAction):
                bar.addAction(item)
            else:
                bar.addWidget(item)

    def _build_status_bar(self) -> None:
        self.model_label = QLabel("No model")
        self.device_label = QLabel("")
        self.photos_label = QLabel("")
        self.query_label = QLabel("")
        status = self.statusBar()
        for label in (self.query_label, self.photos_label, self.model_label, self.device_label):
            status.addPermanentWidget(label)

    # ----------------------------------------------------------------- state shown to the user
    def show_error(self, error: BaseException | str) -> None:
        if isinstance(error, BaseException):
            if not isinstance(error, SketchSearchError):
                write_crash_log(type(error), error, error.__traceback__)
            error = user_message(error)
        self.message_bar.show_error(error)

    def update_empty_state(self) -> None:
        """Tell the user, in the results area, what to do next."""
        active = self.models.active
        if active is None:
            text = self.models.status_text or "No model is loaded yet."
        elif not self.library.roots():
            text = (
                "No photo folder yet.\nAdd one in the Library panel (Add folder…); "
                "it is indexed right away."
            )
        elif active.searcher.size == 0:
            text = (
                "Indexing your photos…\nResults appear as soon as the first are ready."
                if self.models.index_job.is_running()
                else "Nothing is indexed yet.\nPress Index in the Library panel."
            )
        elif self.canvas.is_empty():
            text = "Draw something on the left:\nmatching photos appear here as you draw."
        else:
            text = "No matches yet."
        self.results_view.set_empty_text(text)

    def _show_results(self, response: SearchResponse | None) -> None:
        self.results_model.set_response(response)
        if response is not None:
            self.query_label.setText(format_timings(response.timings_ms))
            if self.results_model.rowCount():
                self.results_view.setCurrentIndex(self.results_model.index(0))
        self.update_empty_state()

    def _on_model_changed(self) -> None:
        active = self.models.active
        self.model_label.setText(f"Model: {self.models.describe_active()}")
        self.device_label.setText(self.models.describe_device())
        if active is None or active.spec != INJECTED:  # an injected model cannot be reloaded
            self.settings.setValue("model", active.spec if active else "")
        self.search.set_searcher(active.searcher if active else None)
        self._on_searchable_changed()

    def _on_searchable_changed(self) -> None:
        active = self.models.active
        size = active.searcher.size if active else 0
        missing = active.searcher.not_indexed if active else 0
        more = f" · {missing:,} not yet for this model" if missing else ""
        self.photos_label.setText(f"{size:,} photos indexed{more}")
        self.update_empty_state()
        self._offer_indexing()
        if active is not None:
            self.search.sketch_changed(debounce=False)

    def _offer_indexing(self) -> None:
        """Say how many photos the active model cannot search yet (e.g. the library was indexed
        with another model too) and offer to index them; not while indexing runs, nor right
        after a finished run for this model (what is left is in unavailable folders), nor
        again for the same count once dismissed."""
        active, job, bar = self.models.active, self.models.index_job, self.message_bar
        missing = active.searcher.not_indexed if active else 0
        just_done = job.model is (active and active.model) and job.last and job.last.phase == "done"
        if not missing or job.is_running() or just_done or self.library.read_only:
            self._offered = None
            if bar.kind == "offer" and not bar.isHidden():
                bar.dismiss()
            return
        offer = (active.searcher.model_id, missing)
        if offer == self._offered or (bar.kind == "error" and not bar.isHidden()):
            return  # shown (or dismissed) already; an error shown now matters more
        self._offered = offer
        photos = "1 photo is" if missing == 1 else f"{missing:,} photos are"
        bar.show_offer(
            f"{photos} not indexed for this model yet, so searches do not see them.",
            "Index now",
            self.models.start_indexing,
        )

    def _on_folders_changed(self) -> None:
        self.models.refresh_searchable()
        self.models.start_indexing()
        self.update_empty_state()

    # ----------------------------------------------------------------- sketch actions
    def _set_eraser(self, eraser: bool) -> None:
        self.canvas.eraser = eraser

    def _run_sketch_action(self, action, *args) -> object:
        try:
            return action(self.canvas, *args)
        except SketchSearchError as exc:
            self.show_error(exc)
            return None

    def open_sketch(self, path: str | Path) -> None:
        self._run_sketch_action(sketch_io.open_sketch, path)

    def save_png(self, path: str | Path) -> Path | None:
        return self._run_sketch_action(sketch_io.save_png, path)

    def save_strokes(self, path: str | Path) -> Path | None:
        saved = self._run_sketch_action(sketch_io.save_strokes_file, path)
        if saved and self.canvas.state().background is not None:
            self.message_bar.show_info(
                "Only the drawn strokes were saved; save a PNG to keep the opened image too."
            )
        return saved

    def paste(self) -> None:
        self._run_sketch_action(sketch_io.paste_sketch, QGuiApplication.clipboard())

    def _ask_path(self, save: bool, title: str, filters: str) -> str:
        folder = self.settings.value("sketch_dir", str(Path.home()), str)
        dialog = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
        path, _ = dialog(self, title, folder, filters)
        if path:
            self.settings.setValue("sketch_dir", str(Path(path).parent))
        return path

    def _choose_sketch(self) -> None:
        if path := self._ask_path(False, "Open a sketch", sketch_io.SKETCH_FILTER):
            self.open_sketch(path)

    def _choose_png(self) -> None:
        if path := self._ask_path(True, "Save the sketch as PNG", sketch_io.PNG_FILTER):
            self.save_png(path)

    def _choose_strokes(self) -> None:
        if path := self._ask_path(True, "Save the strokes", sketch_io.STROKES_FILTER):
            self.save_strokes(path)

    def show_training_panel(self) -> TrainingPanel:
        if self.training_panel is None:
            from app.gui.training_panel import TrainingPanel  # imports torch and training

            self.training_panel = TrainingPanel(self.models, self.runner, self)
            self.training_panel.errorOccurred.connect(self.message_bar.show_error)
        self.training_panel.show()
        self.training_panel.raise_()
        self.training_panel.activateWindow()
        return self.training_panel

    def show_imagine_view(self):
        if self.imagine_dock is None:
            from app.gui.imagine_view import install_imagine_dock

            self.imagine_dock = install_imagine_dock(self)
        self.imagine_dock.show()
        return self.imagine_dock

    # ----------------------------------------------------------------- settings and closing
    def _restore_settings(self) -> None:
        s = self.settings
        if geometry := s.value("geometry"):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 860)
        if state := s.value("window_state"):
            self.restoreState(state)
        if splitter := s.value("splitter"):
            self.splitter.restoreState(splitter)
        else:
            self.splitter.setSizes([420, 580])
        self.count_spin.setValue(int(s.value("result_count", 50)))
        self.width_spin.setValue(int(s.value("pen_width", 3)))
        self.expand_spin.setValue(int(s.value("expand", DEFAULT_EXPAND)))

    def _save_settings(self) -> None:
        s = self.settings
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        s.setValue("splitter", self.splitter.saveState())
        s.setValue("result_count", self.count_spin.value())
        s.setValue("pen_width", self.width_spin.value())
        if self.expand_spin.value() == DEFAULT_EXPAND:  # untouched: follow the app's default
            s.remove("expand")
        else:
            s.setValue("expand", self.expand_spin.value())
        s.sync()

    def shutdown(self) -> None:
        """Cancel running work and wait for every worker thread to finish."""
        if self.training_panel is not None:
            self.training_panel.shutdown()
        self.search.set_searcher(None)
        self.runner.cancel_all()
        self.runner.wait()
        self.thumbnails.shutdown()
        self.results_view.preview.hide()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.training_panel is not None and not self.training_panel.confirm_close():
            event.ignore()  # the user keeps the training running
            return
        self._save_settings()
        self.shutdown()
        if self._owns_library:
            self.library.close()
        super().closeEvent(event)
