"""Opening, saving and pasting sketches (and photos) on the canvas. Every function raises a named
engine error (shown to the user by the caller) rather than failing quietly.

An opened or pasted picture is either a sketch (searched as a sketch, shown in its normalised
form) or a photo (searched for photos like it, by the model's photo encoder: "more like this
photo"). ``looks_like_photo`` tells them apart by colour and grey levels: on a third of the
shared data it called 0 of 867 Sketchy sketches and 3 of 1438 QMUL and PACS sketches and edge
maps photos, and 99.9% of the Sketchy and PACS photos and 95% of the QMUL product shots (on
white) photos. The toolbar's "As photo" switch corrects it either way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QClipboard, QImage

from app.gui.search.canvas import SketchCanvas, array_image, gray_array, rgb_array
from engine.errors import ImageLoadError, SketchError
from engine.images import load_photo
from engine.strokes import load_strokes, save_strokes

log = logging.getLogger(__name__)

SKETCH_FILTER = "Sketches (*.png *.jpg *.jpeg *.bmp *.webp *.json);;All files (*)"
PNG_FILTER = "PNG image (*.png)"
STROKES_FILTER = "Strokes (*.json)"
STROKES_SUFFIX = ".json"
PICTURE_SIDE = 1024  # a photo query is kept (and shown) at most this large
PHOTO_GREY_LEVELS = 8  # of 32 grey bins holding 0.5% of the pixels or more
PHOTO_MID_TONES = 0.05  # fraction of pixels neither near black nor near white
PHOTO_SATURATION = 0.15  # mean colour saturation


def looks_like_photo(rgb: np.ndarray) -> bool:
    """Whether a picture (uint8 (H, W, 3)) is a photo rather than a sketch: colourful, or
    many grey levels with some mid-tones (a sketch is paper and ink, a few levels)."""
    pixels = np.asarray(rgb, np.float32)
    if pixels.ndim == 2:
        pixels = pixels[..., None].repeat(3, axis=2)
    step = max(1, max(pixels.shape[:2]) // 256)  # a 256-pixel view is plenty
    pixels = pixels[::step, ::step, :3]
    grey = pixels.mean(axis=2)
    high, low = pixels.max(axis=2), pixels.min(axis=2)
    saturation = float(((high - low) / np.maximum(high, 1.0)).mean())
    mid = float(((grey > 40) & (grey < 215)).mean())
    histogram = np.histogram(grey, bins=32, range=(0, 256))[0] / grey.size
    levels = int((histogram > 0.005).sum())
    return saturation >= PHOTO_SATURATION or (
        levels >= PHOTO_GREY_LEVELS and mid >= PHOTO_MID_TONES
    )


def show_photo(canvas: SketchCanvas, rgb: np.ndarray, text: str, source: Path | None) -> None:
    """Make a photo the query ("more like this photo"), shown at most PICTURE_SIDE large."""
    image = array_image(rgb)
    if max(image.width(), image.height()) > PICTURE_SIDE:
        keep, smooth = (
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        image = image.scaled(PICTURE_SIDE, PICTURE_SIDE, keep, smooth)
    canvas.set_background(image, text, photo=True, source=source)


def open_photo(canvas: SketchCanvas, path: str | Path) -> None:
    """Search for photos like the photo file ``path`` (a result's "More like this")."""
    path = Path(path)
    picture = load_photo(path, target_size=PICTURE_SIDE)
    show_photo(canvas, np.asarray(picture.convert("RGB")), f"More like {path.name}", path)


def open_sketch(canvas: SketchCanvas, path: str | Path) -> None:
    """Strokes files become strokes (editable, undoable); a photo becomes the query photo; a
    sketch image becomes the canvas background, normalised as the search sees it."""
    path = Path(path)
    if path.suffix.lower() == STROKES_SUFFIX:
        strokes = load_strokes(path)
        if not strokes:
            raise SketchError(f"{path.name} holds no strokes; open another sketch.")
        canvas.set_strokes(strokes, f"Open {path.name}")
        return
    try:
        picture = load_photo(path, target_size=PICTURE_SIDE)
    except ImageLoadError:
        picture = None  # load_sketch below says what is wrong, as the command line does
    if picture is not None:
        rgb = np.asarray(picture.convert("RGB"))
        if looks_like_photo(rgb):
            show_photo(canvas, rgb, f"Open {path.name}", path)
            return
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
    rgb = rgb_array(image)
    if looks_like_photo(rgb):
        show_photo(canvas, rgb, "Paste photo", None)
        return
    from engine.sketch import normalize_sketch

    canvas.set_background(array_image(normalize_sketch(gray_array(image))), "Paste image")
