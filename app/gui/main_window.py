"""The main window: canvas on the left, results on the right, the library in a dock (View ▸
Library, Ctrl+L, hides it), the menus and the Sketch and Search toolbars
(``app.gui.window_actions``), and the search/model/index state in the status bar.

What the window shows belongs to the state it describes:
- an error names its owner (``MessageBar.show_error(owner=...)``): "sketch" for a search or an
  open that failed, ("model", spec) and ("index", spec) for a model's load or indexing, "library"
  for the folders; it goes when its state goes: any change of the sketch (a stroke, undo, clear,
  open), another model, a change of folders. A failed search clears the results beside it, and
  a drawing whose ink was all erased is an empty sketch, not an error;
- results of a search that only newly indexed photos caused (``SearchController.refresh_only``)
  wait while the pointer is over the grid, so tiles do not move under it; they are shown when
  it leaves (the status bar says so meanwhile);
- Re-rank is enabled only for a model that can re-rank (``rerank_features``), and on when such a
  model becomes active (its measured figures are those of the re-ranked search); its tooltip
  says why not, and a search that could not re-rank says why in the status bar.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeySequence, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.errors import MessageBar, user_message, write_crash_log
from app.gui.library.model_control import INJECTED, ModelControl
from app.gui.library.panel import LibraryPanel
from app.gui.search import sketch_io
from app.gui.search.canvas import SketchCanvas
from app.gui.search.controller import SearchController
from app.gui.search.results import ResultsModel, ResultsView
from app.gui.search.thumbnails import ThumbnailLoader
from app.gui.settings import app_settings
from app.gui.window_actions import EXPAND_TIP, RERANK_TIP, WindowActions
from app.gui.workers import JobRunner
from engine.defaults import DEFAULT_EXPAND
from engine.errors import EmptySketchError, SketchSearchError
from engine.library import Library

if TYPE_CHECKING:  # the window is built before torch is imported (start-up time)
    from app.gui.train.panel import TrainingPanel
    from engine.models import SketchHashModel
    from engine.searcher import SearchResponse

log = logging.getLogger(__name__)

TIMING_STAGES = ("normalize", "encode", "search", "lookup")
DOCK_SHARE = 0.2  # of the window's width, for the Library dock at first (then as left)
DOCK_WIDTH = (190, 300)  # its bounds in pixels
HELD_NOTE = "New photos were indexed: the results update when the pointer leaves them."


def format_timings(timings: dict[str, float]) -> str:
    stages = " · ".join(f"{k} {timings[k]:.0f}" for k in TIMING_STAGES if k in timings)
    return f"Query {timings.get('total', 0):.0f} ms ({stages})"


class MainWindow(WindowActions, QMainWindow):
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
        self._held: SearchResponse | None = None  # results waiting for the pointer to leave
        self._erased = False  # the last search found no ink left: everything was erased
        self.crashReported.connect(self.message_bar.show_error)

        self.canvas = SketchCanvas()
        self.results_model = ResultsModel(self.thumbnails, self)
        self.results_view = ResultsView(self.thumbnails)
        self.results_view.setModel(self.results_model)
        self.results_view.errorOccurred.connect(self.message_bar.show_error)
        self.results_view.moreLikeRequested.connect(self.more_like)
        self.results_view.pointerLeft.connect(self._release_held)
        self.search = SearchController(self.runner, self.canvas.query, self)
        self.canvas.sketchChanged.connect(self._on_sketch_changed)
        self.search.resultsReady.connect(self._on_results)
        self.search.searchFailed.connect(self._on_search_failed)
        self.search.cleared.connect(lambda: self._show_results(None))

        self.library_panel = LibraryPanel(self.library, settings=self.settings)
        self.library_panel.errorOccurred.connect(
            lambda text: self.message_bar.show_error(text, owner="library")
        )
        self.library_panel.infoOccurred.connect(self.message_bar.show_info)
        self.models = ModelControl(self.library, self.runner, self.library_panel, self)
        self.models.modelChanged.connect(self._on_model_changed)
        self.models.searchableChanged.connect(self._on_searchable_changed)
        self.models.errorOccurred.connect(
            lambda exc: self.show_error(exc, owner=self.models.error_owner)
        )
        self.models.statusChanged.connect(self.update_empty_state)
        self.models.statusChanged.connect(self._offer_indexing)
        self.library_panel.foldersChanged.connect(self._on_folders_changed)

        self._build_layout()
        self._build_actions()
        self.picture_button.setDefaultAction(self.photo_action)
        self._build_status_bar()
        self._restore_settings()
        self.update_empty_state()
        self.training_panel: TrainingPanel | None = None  # made when first opened
        self.imagine_dock = None  # made when first opened (app.gui.search.imagine_view)
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
        splitter.addWidget(self._canvas_column())
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
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.library_dock = dock
        self._dock_sized = False
        self.library_action = dock.toggleViewAction()
        self.library_action.setText("Library panel")
        self.library_action.setShortcut(QKeySequence("Ctrl+L"))
        self.library_action.setToolTip("Show or hide the Library panel (Ctrl+L)")
        self.addAction(self.library_action)

    def _canvas_column(self) -> QWidget:
        """The canvas, with a line above it while a picture is open: searched as a photo or
        as a sketch (the "As photo" switch)."""
        column = QWidget()
        layout = QVBoxLayout(column)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.picture_bar = QWidget()
        row = QHBoxLayout(self.picture_bar)
        row.setContentsMargins(4, 0, 4, 0)
        self.picture_label = QLabel()
        self.picture_button = QToolButton()
        row.addWidget(self.picture_label, 1)
        row.addWidget(self.picture_button)
        self.picture_bar.hide()
        layout.addWidget(self.picture_bar)
        layout.addWidget(self.canvas, 1)
        return column

    def _build_status_bar(self) -> None:
        self.model_label = QLabel("No model")
        self.device_label = QLabel("")
        self.photos_label = QLabel("")
        self.query_label = QLabel("")
        self.note_label = QLabel("")  # results held back, or why a search was not re-ranked
        status = self.statusBar()
        status.addWidget(self.note_label, 1)
        for label in (self.query_label, self.photos_label, self.model_label, self.device_label):
            status.addPermanentWidget(label)

    def _dock_width(self) -> int:
        low, high = DOCK_WIDTH
        return int(min(max(self.width() * DOCK_SHARE, low), high))

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._dock_sized:  # a share of the window, not the panel's natural 270 px
            self._dock_sized = True
            if not self.settings.value("window_state"):
                width = self._dock_width()
                self.resizeDocks([self.library_dock], [width], Qt.Orientation.Horizontal)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """A smaller window narrows a wide Library dock too (Qt would take it all from the
        canvas and the results)."""
        super().resizeEvent(event)
        dock, width = self.library_dock, self._dock_width()
        docked = self._dock_sized and dock.isVisible() and not dock.isFloating()
        if docked and dock.width() > width:
            self.resizeDocks([dock], [width], Qt.Orientation.Horizontal)

    # ----------------------------------------------------------------- state shown to the user
    def show_error(self, error: BaseException | str, owner: object = None) -> None:
        """Show an error; ``owner``: the state it belongs to, which takes it away when it goes
        (see the module docstring)."""
        if isinstance(error, BaseException):
            if not isinstance(error, SketchSearchError):
                write_crash_log(type(error), error, error.__traceback__)
            error = user_message(error)
        self.message_bar.show_error(error, owner=owner)

    def _on_sketch_changed(self) -> None:
        """A stroke, undo, redo, clear, open or paste: errors of the sketch before go, and held
        results are of the sketch before too."""
        self.message_bar.dismiss_owned(lambda owner: owner == "sketch")
        self._erased = False
        self._held = None
        self.note_label.setText("")
        picture, photo = self.canvas.state().background is not None, self.canvas.is_photo()
        self.photo_action.setEnabled(picture)
        self.photo_action.setChecked(photo)
        self.picture_bar.setVisible(picture)
        self.picture_label.setText(
            "Searching for photos like this photo." if photo else "Searching with this sketch."
        )
        self.search.sketch_changed()
        self.update_empty_state()

    def _on_search_failed(self, exc: BaseException) -> None:
        self._show_results(None)  # results of another sketch must not stay beside the error
        if isinstance(exc, EmptySketchError):  # all ink erased: nothing to search, no error
            self._erased = True
            self.update_empty_state()
            return
        self.show_error(exc, owner="sketch")

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
        elif self._erased:
            text = "Everything drawn was erased.\nDraw something to search again."
        else:
            text = "No matches yet."
        self.results_view.set_empty_text(text)

    def _on_results(self, response: SearchResponse) -> None:
        if self.search.refresh_only and self.results_view.hovered and self.results_model.rowCount():
            self._held = response  # only new photos: keep the tiles under the pointer still
            self.note_label.setText(HELD_NOTE)
            return
        self._show_results(response)

    def _release_held(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._show_results(held)

    def _show_results(self, response: SearchResponse | None) -> None:
        self._held = None
        self.results_model.set_response(response)
        note = ""
        if response is not None:
            self.query_label.setText(format_timings(response.timings_ms))
            if self.results_model.rowCount():
                self.results_view.setCurrentIndex(self.results_model.index(0))
            if response.rerank_note:
                note = f"Not re-ranked: {response.rerank_note}"
        self.note_label.setText(note)
        self.update_empty_state()

    def _on_model_changed(self) -> None:
        active = self.models.active
        self.model_label.setText(f"Model: {self.models.describe_active()}")
        self.device_label.setText(self.models.describe_device())
        spec = active.spec if active else None
        self.message_bar.dismiss_owned(  # errors of the sketch's search or of other models
            lambda owner: (
                owner == "sketch"
                or (isinstance(owner, tuple) and (owner[0] == "model" or owner[1] != spec))
            )
        )
        self._update_model_actions()
        if active is None or active.spec != INJECTED:  # an injected model cannot be reloaded
            self.settings.setValue("model", active.spec if active else "")
        rerank = self.rerank_action.isChecked()  # on for a model that re-ranks (above)
        self.search.set_searcher(active.searcher if active else None, rerank=rerank)
        self._on_searchable_changed(search=False)

    def _update_model_actions(self) -> None:
        """Re-rank only where the model has an exact distance; Imagine only where it can."""
        active = self.models.active
        model = active.model if active else None
        can_rerank = bool(model is not None and model.rerank_features)
        self.rerank_action.setEnabled(can_rerank)
        # on by default where it applies (DSSA's figures are those of its re-ranked search);
        # the search takes it with the new searcher (set_searcher), in one search
        self.rerank_action.setChecked(can_rerank)
        if can_rerank:
            self.rerank_action.setToolTip(f"{RERANK_TIP} ({self.models.describe_active()})")
        else:
            name = self.models.describe_active() if model is not None else "No model"
            self.rerank_action.setToolTip(
                f"{RERANK_TIP}: not available for {name}, which has no exact distance to "
                "re-rank by (DSSA models have one)."
            )
        expands = model is None or model.expands
        self.expand_spin.setEnabled(expands)
        self.expand_spin.setToolTip(
            EXPAND_TIP
            if expands
            else f"{EXPAND_TIP}: not used for {self.models.describe_active()}, which looks for one "
            "particular photo (its nearest photos are other instances of the same kind)."
        )
        # in the toolbar only for a model that can imagine; the View menu always has it
        self._imagine_button.setVisible(bool(model is not None and model.can_imagine))

    def _on_searchable_changed(self, search: bool = True) -> None:
        """The photos the active model can search changed (indexing made more searchable, a
        folder went): search again; ``search`` False: the caller searches itself."""
        active = self.models.active
        size = active.searcher.size if active else 0
        missing = active.searcher.not_indexed if active else 0
        more = f" · {missing:,} not yet for this model" if missing else ""
        self.photos_label.setText(f"{size:,} photos indexed{more}")
        self.update_empty_state()
        self._offer_indexing()
        if active is not None and search:
            self.search.library_changed()

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
        self.message_bar.dismiss_owned(lambda owner: owner == "library")
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
            self.show_error(exc, owner="sketch")
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

    def more_like(self, path: Path) -> None:
        """Search for photos like the photo at ``path`` (a result's Similar): it becomes the
        query, by the model's photo encoder."""
        self._run_sketch_action(sketch_io.open_photo, path)

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
            from app.gui.train.panel import TrainingPanel  # imports torch and training

            self.training_panel = TrainingPanel(self.models, self.runner, self)
            self.training_panel.errorOccurred.connect(self.message_bar.show_error)
        self.training_panel.show()
        self.training_panel.raise_()
        self.training_panel.activateWindow()
        return self.training_panel

    def show_imagine_view(self):
        if self.imagine_dock is None:
            from app.gui.search.imagine_view import install_imagine_dock

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
