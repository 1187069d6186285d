"""Opening, saving and pasting sketches on the canvas. Every function raises a named engine error
(shown to the user by the caller) rather than failing quietly."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtGui import QClipboard, QImage

from app.gui.canvas import SketchCanvas, array_image, gray_array
from engine.errors import ImageLoadError, SketchError
from engine.strokes import load_strokes, save_strokes

log = logging.getLogger(__name__)

SKETCH_FILTER = "Sketches (*.png *.jpg *.jpeg *.bmp *.webp *.json);;All files (*)"
PNG_FILTER = "PNG image (*.png)"
STROKES_FILTER = "Strokes (*.json)"
STROKES_SUFFIX = ".json"


def open_sketch(canvas: SketchCanvas, path: str | Path) -> None:
    """Strokes files become strokes (editable, undoable); images become the canvas background."""
    path = Path(path)
    if path.suffix.lower() == STROKES_SUFFIX:
        strokes = load_strokes(path)
        if not strokes:
            raise SketchError(f"{path.name} holds no strokes; open another sketch.")
        canvas.set_strokes(strokes, f"Open {path.name}")
    else:
        from engine.sketch import load_sketch  # scikit-image: not needed before the first open

        canvas.set_background(array_image(load_sketch(path)), f"Open {path.name}")


def save_png(canvas: SketchCanvas, path: str | Path) -> Path:
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    if not canvas.render_image().save(str(path), "PNG"):
        raise ImageLoadError(f"Could not write {path}; check that the folder is writable.")
    return path


def save_strokes_file(canvas: SketchCanvas, path: str | Path) -> Path:
    """Save the strokes as JSON; an opened or pasted image is not part of it (save a PNG)."""
    strokes = canvas.strokes()
    if not strokes:
        raise SketchError("There are no strokes to save; draw first, or save the image as PNG.")
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(STROKES_SUFFIX)
    return save_strokes(path, strokes)


def paste_sketch(canvas: SketchCanvas, clipboard: QClipboard) -> None:
    """Use the clipboard's image (or an image file copied in a file manager) as the query."""
    image: QImage = clipboard.image()
    if image.isNull():
        mime = clipboard.mimeData()
        files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime else []
        if files:
            open_sketch(canvas, files[0])
            return
        raise SketchError("The clipboard holds no image; copy a sketch or a picture first.")
    from engine.sketch import normalize_sketch

    canvas.set_background(array_image(normalize_sketch(gray_array(image))), "Paste image")
