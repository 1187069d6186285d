""" "What the model imagines, epoch N": the training panel's strip of a few fixed sketches, each
above the photo that epoch's generator G_I makes of it, so a researcher watches the domain
migration improve while a GDH model trains (and sees at once when it collapses to a blur).

``ImagineStrip.show_preview`` takes the ``preview`` payload of the training child
(``app.training_process``). Choices:
- a tile is at most ``TILE`` px; a smaller image is enlarged by a whole factor with nearest
  neighbours, so every model pixel is a crisp block: smoothing would add a blur of its own to the
  very thing the strip is there to show. A larger image is reduced smoothly;
- a failed preview clears the tiles and says why in the title: showing the previous epoch's
  pictures under a newer epoch's title would mislead;
- before the first epoch (and after a failure) ``PLACEHOLDERS`` empty tiles hold the strip's
  place, so the panel's layout does not jump when the first pictures arrive (seen in a
  screenshot: the plots above shrank and the new tiles overlapped for a moment).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from app.gui.search.canvas import array_image

log = logging.getLogger(__name__)

TILE = 128
PLACEHOLDERS = 4  # empty tiles shown until the first preview (the child sends 4)
WAITING_TEXT = "What the model imagines: shown after each epoch, for the same sketches."


def tile_scale(size: int, tile: int = TILE) -> int:
    """The side a ``size`` px image is shown at: a whole multiple up to ``tile``, else ``tile``."""
    return size * (tile // size) if size <= tile else tile


def to_tile(image: np.ndarray, tile: int = TILE) -> QPixmap:
    """uint8 (h, w) grey or (h, w, 3) RGB to a square pixmap of ``tile_scale(h)`` px."""
    h = image.shape[0]
    side = tile_scale(h, tile)
    mode = (
        Qt.TransformationMode.FastTransformation
        if side >= h
        else Qt.TransformationMode.SmoothTransformation
    )
    pixmap = QPixmap.fromImage(array_image(image))
    return pixmap.scaled(side, side, Qt.AspectRatioMode.IgnoreAspectRatio, mode)


def caption(name: str) -> str:
    """'airplane/n02691156_10151-3' to 'airplane' (category data); a fine-grained key as is."""
    return name.split("/", 1)[0]


class ImagineStrip(QWidget):
    """Sketches (top row) and what the model imagines of them (below), for the newest epoch."""

    def __init__(self, parent: QWidget | None = None, tile: int = TILE) -> None:
        super().__init__(parent)
        self.tile = tile
        self.epoch: int | None = None
        self.sketches: np.ndarray | None = None  # uint8 (n, S, S) shown
        self.images: np.ndarray | None = None  # uint8 (n, P, P, 3) shown
        self.title = QLabel(WAITING_TEXT, wordWrap=True)
        self.sketch_labels: list[QLabel] = []
        self.image_labels: list[QLabel] = []
        self.caption_labels: list[QLabel] = []
        self._grid = QGridLayout()
        self._grid.setHorizontalSpacing(12)
        self._grid.setVerticalSpacing(2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(self._grid)
        self._set_tiles(None, None, [])

    def show_preview(self, payload: dict[str, Any]) -> None:
        """Show a ``preview`` payload of the training child (or its error)."""
        epoch, epochs = payload["epoch"], payload.get("epochs")
        of = f" of {epochs}" if epochs else ""
        if "error" in payload:
            self._set_tiles(None, None, [])
            self.epoch = epoch
            self.title.setText(
                f"Could not show what the model imagines at epoch {epoch}: "
                f"{payload['error']} (training goes on)."
            )
            return
        self._set_tiles(payload["sketches"], payload["images"], payload.get("names", []))
        self.epoch = epoch
        size = self.images.shape[1]
        self.title.setText(
            f"<b>What the model imagines, epoch {epoch}{of}</b> "
            f"(sketch above, its generated {size}×{size} photo below)"
        )

    def clear(self) -> None:
        """Nothing shown yet (a new run)."""
        self._set_tiles(None, None, [])
        self.epoch = None
        self.title.setText(WAITING_TEXT)

    def _set_tiles(self, sketches, images, names: list[str]) -> None:
        self.sketches, self.images = sketches, images
        count = 0 if images is None else len(images)
        columns = count or PLACEHOLDERS
        while len(self.image_labels) < columns:
            column = len(self.image_labels)
            for row, labels in enumerate(
                (self.sketch_labels, self.image_labels, self.caption_labels)
            ):
                label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
                if row < 2:
                    label.setFixedSize(self.tile + 2, self.tile + 2)  # and its 1-px border
                    label.setStyleSheet("background: white; border: 1px solid #bbb;")
                self._grid.addWidget(label, row, column)
                labels.append(label)
            self._grid.setColumnStretch(column, 0)
            self._grid.setColumnStretch(column + 1, 1)  # the tiles stay together on the left
        for i, (sketch_label, image_label, text_label) in enumerate(
            zip(self.sketch_labels, self.image_labels, self.caption_labels, strict=True)
        ):
            for label in (sketch_label, image_label, text_label):
                label.setVisible(i < columns)
                label.clear()
            if i < count:
                sketch_label.setPixmap(to_tile(sketches[i], self.tile))
                image_label.setPixmap(to_tile(images[i], self.tile))
                text_label.setText(caption(names[i]) if i < len(names) else "")
                text_label.setToolTip(names[i] if i < len(names) else "")


__all__ = ["ImagineStrip", "tile_scale", "to_tile"]
