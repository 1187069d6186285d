""" "What the model imagines": the photo a GDH model's generator G_I makes of the current sketch.

``ImagineView`` shows ``model.imagine(sketch)`` for models whose class says ``can_imagine``
(GDH) and says plainly when the active model cannot. Like the search, the generator runs off the
GUI thread, debounced, one run at a time, and an answer for an older sketch is dropped when a
newer one exists (the newest is run next): ``app.gui.search.newest_job.NewestJob``.
``install_imagine_dock`` puts the view in a dock of the main window and wires it to the canvas and
the model picker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QDockWidget, QLabel, QVBoxLayout, QWidget

from app.gui.search.canvas import array_image
from app.gui.search.newest_job import DEBOUNCE_MS, NewestJob
from app.gui.workers import JobRunner
from engine.models import SketchHashModel
from engine.sketch_input import sketch_input

log = logging.getLogger(__name__)

DISPLAY_SIZE = 256
EMPTY_TEXT = "Draw a sketch to see what the model imagines."
NO_MODEL_TEXT = "No model is active."


def cannot_text(model: SketchHashModel) -> str:
    return (
        f"The active model ({model.method}) cannot imagine a photo: only models with a "
        "sketch-to-photo generator (GDH) can. Pick a GDH model to see one."
    )


def imagine_query(model: SketchHashModel, query: object) -> np.ndarray:
    """The uint8 (P, P, 3) photo ``model`` imagines for a canvas query (strokes or an image)."""
    return model.imagine(sketch_input(query)[None])[0]


def to_pixmap(image: np.ndarray, size: int = DISPLAY_SIZE) -> QPixmap:
    """uint8 (h, w, 3) RGB to a (size, size) pixmap (smoothly scaled)."""
    return QPixmap.fromImage(array_image(image)).scaled(
        size,
        size,
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )


class ImagineView(QWidget):
    imageReady = Signal(object)  # uint8 (P, P, 3) of the newest sketch
    failed = Signal(object)  # the exception

    def __init__(
        self,
        runner: JobRunner,
        query_source: Callable[[], object],
        parent: QWidget | None = None,
        debounce_ms: int = DEBOUNCE_MS,
    ) -> None:
        super().__init__(parent)
        self._query_source = query_source  # the current query, or None when the sketch is empty
        self._model: SketchHashModel | None = None
        self.image: np.ndarray | None = None  # what is shown, at the model's photo size
        self.picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.picture.setFixedSize(DISPLAY_SIZE, DISPLAY_SIZE)
        self.message = QLabel(NO_MODEL_TEXT, wordWrap=True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture)
        layout.addWidget(self.message)
        layout.addStretch(1)
        self._job = NewestJob(runner, self._imagine_call, self, debounce_ms)
        self._job.returned.connect(self._on_returned)
        self._job.errored.connect(self._on_errored)

    # ------------------------------------------------------------------ inputs
    def can_imagine(self) -> bool:
        return self._model is not None and bool(getattr(self._model, "can_imagine", False))

    def set_model(self, model: SketchHashModel | None) -> None:
        self._model = model
        if model is None:
            self._show(None, NO_MODEL_TEXT)
        elif not self.can_imagine():
            self._show(None, cannot_text(model))
        self.sketch_changed(debounce=False)

    def sketch_changed(self, debounce: bool = True) -> None:
        self._job.request(debounce)

    def is_busy(self) -> bool:
        return self._job.is_busy()

    # ------------------------------------------------------------------ the job
    def _imagine_call(self) -> Callable[[], np.ndarray] | None:
        if not self.can_imagine():
            return None
        query = self._query_source()
        if query is None:
            self._show(None, EMPTY_TEXT)
            return None
        return partial(imagine_query, self._model, query)

    def _on_returned(self, image: np.ndarray) -> None:
        if not self.can_imagine():
            return
        size = image.shape[0]
        self._show(image, f"What the model imagines ({self._model.method}, {size}x{size} px).")
        self.imageReady.emit(image)

    def _on_errored(self, exc: BaseException) -> None:
        self._show(None, f"Could not imagine a photo: {exc}")
        self.failed.emit(exc)

    def _show(self, image: np.ndarray | None, text: str) -> None:
        self.image = image
        if image is None:
            self.picture.clear()
        else:
            self.picture.setPixmap(to_pixmap(image))
        # a message alone sits at the top of the dock, not below an empty square
        self.picture.setVisible(image is not None)
        self.message.setText(text)


def install_imagine_dock(window) -> QDockWidget:
    """A dock with an ``ImagineView`` on ``window`` (a MainWindow), following its canvas and
    active model."""
    view = ImagineView(window.runner, window.canvas.query, window)
    dock = QDockWidget("What the model imagines", window)
    dock.setObjectName("imagineDock")
    dock.setWidget(view)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def follow_model() -> None:
        active = window.models.active
        view.set_model(active.model if active is not None else None)

    window.canvas.sketchChanged.connect(view.sketch_changed)
    window.models.modelChanged.connect(follow_model)
    follow_model()
    dock.view = view
    return dock


__all__ = ["ImagineView", "imagine_query", "install_imagine_dock", "to_pixmap"]
