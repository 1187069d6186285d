"""Decoding users' photos safely, and turning a photo into a model input.

Choices:
- ``load_photo`` reads the header first and refuses an image whose width x height exceeds
  ``max_pixels`` before any pixel is decoded (decompression bombs). ``MAX_PIXELS`` is 178 MP: above
  every common camera and phone default (a 108 MP phone photo loads), and just under Pillow's own
  hard limit (2 x ``Image.MAX_IMAGE_PIXELS``), which also still applies. Pillow's
  ``DecompressionBombWarning`` (89 MP) is silenced once at import since our cap replaces it.
- Memory is capped too, by bytes, not only pixels: ``decode_bytes`` estimates from the header's
  mode and size (Pillow's bytes per pixel: 1 for L/P/1, 2 for 16-bit grey, 4 for RGB and the
  rest) what the decoded image and its conversion to RGB will take, and an estimate above
  ``max_bytes`` (``MAX_DECODE_BYTES``, 1 GiB) is refused before decoding. A ``DecodeBudget``
  shared by the threads that decode (the indexer makes one per run) bounds the bytes of the
  decodes running at once: a big decode waits until the others leave room for it.
- With ``target_size``, JPEGs decode in draft mode (DCT scaling by 1/2, 1/4 or 1/8) to the smallest
  scale whose sides are both >= target_size: a 12 MP photo for a 224 px model decodes at 1/8.
  Other formats are shrunk by an integer box reduction right after decoding, to a short side of
  at least 2 x target_size (what ``prepare_photo``'s ``reducing_gap`` does anyway), before the
  conversions to RGB, so those run on the small image. 16-bit and float images are scaled to
  8-bit grey in strips of rows (Pillow cannot reduce them): a 16-bit 13300 x 13300 PNG takes
  about 0.6 GB, not 3 GB.
- ``data``: the file's bytes when the caller has read them already (the indexer hashes them for
  the content key), so the file is read once.
- EXIF orientation is applied (a broken EXIF block is ignored, not fatal), after any reduction;
  animations give their first frame; every mode becomes RGB: transparency is composited on
  white, 16/32-bit and float images are scaled to 8 bit by their maximum, CMYK uses Pillow's
  conversion.
- Truncated files are errors (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False): a half-written
  photo should be re-indexed once complete, not indexed grey.
- HEIC/HEIF are read when the optional ``pillow-heif`` is installed; AVIF when Pillow or
  pillow-heif supports it.
- Each call opens its own file and touches no shared state, so many threads may call at once.
- ``prepare_photo`` resizes so the short side is ``size`` and centre-crops the square, as the
  ImageNet evaluation transform does; it is one ``resize`` with a source box, bilinear (antialiased
  like torchvision's ``Resize``) with ``reducing_gap=2`` (fast integer reduction first).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError, features

from engine.errors import ImageLoadError

log = logging.getLogger(__name__)

MAX_PIXELS = 178_000_000
"""Default cap on width x height, checked from the header before decoding."""
MAX_DECODE_BYTES = 1 << 30
"""Default cap on the estimated memory of one decode (``decode_bytes``), checked before it."""
STRIP_PIXELS = 1 << 22
"""Pixels per strip when a 16-bit or float image is scaled to 8 bit (16 MB of float32)."""

_HEIF_SUFFIXES = frozenset({".heic", ".heif"})
_BASE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def _register_heif() -> frozenset[str]:
    suffixes: set[str] = set()
    try:
        import pillow_heif
    except ImportError:
        log.debug("pillow-heif is not installed: HEIC/HEIF photos are skipped")
    else:
        pillow_heif.register_heif_opener()
        suffixes |= _HEIF_SUFFIXES
        if hasattr(pillow_heif, "register_avif_opener") and not features.check("avif"):
            pillow_heif.register_avif_opener()
            suffixes.add(".avif")
    if features.check("avif"):
        suffixes.add(".avif")
    return frozenset(suffixes)


PHOTO_EXTENSIONS: frozenset[str] = _BASE_SUFFIXES | _register_heif()
"""Lower-case file suffixes the indexer treats as photos."""

warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_ALPHA_MODES = frozenset({"RGBA", "LA", "La", "RGBa", "PA"})
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_TWO_BYTE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_REDUCIBLE_MODES = frozenset(
    {"L", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"}
)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def bytes_per_pixel(mode: str) -> int:
    """What Pillow keeps in memory per pixel of an image in ``mode`` (RGB is padded to 4)."""
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode in _TWO_BYTE_MODES else 4


def decode_bytes(mode: str, size: tuple[int, int], target_size: int | None = None) -> int:
    """Estimated peak memory of ``load_photo`` for an image of this mode and (drafted) size:
    the decoded image, plus the full-size conversions that run before any reduction (and, with
    no ``target_size``, the conversion of the whole image to RGB)."""
    pixels = size[0] * size[1]
    total = pixels * bytes_per_pixel(mode)
    if mode in _WIDE_MODES:
        total += pixels  # scaled to 8-bit grey, strip by strip
    elif mode == "P":
        total += 4 * pixels  # to RGB(A) before it can be reduced
    elif mode == "1":
        total += pixels  # to L before it can be reduced
    if target_size is None:  # converted (or copied) at full size
        total += 4 * pixels * (3 if mode in _ALPHA_MODES or mode == "P" else 1)
    return total


class DecodeBudget:
    """Bounds the memory of the decodes that run at once, across threads.

    Each decode reserves its estimate (``decode_bytes``) and waits while the reservations of
    the others leave too little room; one larger than the whole budget waits to run alone.
    Reservations are admitted in arrival order, so a big decode is not starved by small ones.
    ``peak`` is the most bytes reserved at once, ``waits`` how many decodes had to wait.
    """

    def __init__(self, capacity: int = MAX_DECODE_BYTES) -> None:
        if capacity <= 0:
            raise ValueError("A decode budget needs a positive number of bytes.")
        self.capacity = int(capacity)
        self.peak = 0
        self.waits = 0
        self._used = 0
        self._next_ticket = 0
        self._admitting = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        need = min(max(int(nbytes), 0), self.capacity)
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1

            def admitted() -> bool:
                return ticket == self._admitting and self._used + need <= self.capacity

            if not admitted():
                self.waits += 1
                self._cond.wait_for(admitted)
            self._admitting += 1
            self._used += need
            self.peak = max(self.peak, self._used)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._used -= need
                self._cond.notify_all()


def load_photo(
    path: str | os.PathLike,
    target_size: int | None = None,
    max_pixels: int = MAX_PIXELS,
    *,
    max_bytes: int = MAX_DECODE_BYTES,
    budget: DecodeBudget | None = None,
    data: bytes | None = None,
) -> Image.Image:
    """Decode a photo file to an RGB image, upright; raise ImageLoadError with a reason if not.

    With ``target_size`` the result may be reduced, but its short side stays >= target_size
    (when the photo has that many pixels). ``data``: the file's bytes, already read.
    """
    path = Path(path)
    name = path.name
    try:
        if data is None and path.is_dir():
            raise ImageLoadError(f"{name} is a folder, not a photo.")
        if (len(data) if data is not None else path.stat().st_size) == 0:
            raise ImageLoadError(f"{name} is empty (0 bytes); the copy may have failed.")
        with Image.open(io.BytesIO(data) if data is not None else path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageLoadError(_too_large(name, width, height, max_pixels))
            if target_size is not None:
                img.draft("RGB", (target_size, target_size))
            need = decode_bytes(img.mode, img.size, target_size)
            if need > max_bytes:
                raise ImageLoadError(_too_much_memory(name, img.mode, img.size, need, max_bytes))
            with budget.reserve(need) if budget is not None else _no_budget():
                img.load()
                orientation = _orientation(img, name)
                rgb = to_rgb(_transpose(_reduce(img, target_size), orientation))
                # the file's image is released when the with block closes it: keep a copy
                return rgb.copy() if rgb is img else rgb
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{name} does not exist any more (moved or deleted?).") from exc
    except PermissionError as exc:
        raise ImageLoadError(f"No permission to read {name}; check the file's access.") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name} is too large to decode safely ({exc}).") from exc
    except UnidentifiedImageError as exc:
        hint = ""
        if path.suffix.lower() in _HEIF_SUFFIXES - PHOTO_EXTENSIONS:
            hint = " Install the optional 'pillow-heif' package to read HEIC/HEIF photos."
        msg = f"{name} is not a readable image (damaged, or a format this app does not read)."
        raise ImageLoadError(msg + hint) from exc
    except MemoryError as exc:
        raise ImageLoadError(f"Not enough memory to decode {name}.") from exc
    except (
        Exception
    ) as exc:  # decoders of untrusted files raise many types (OSError, SyntaxError..)
        if "truncated" in str(exc).lower():
            reason = "is truncated (an incomplete download or copy?)"
        else:
            reason = f"is corrupt or unreadable ({type(exc).__name__}: {exc})"
        raise ImageLoadError(f"{name} {reason}; re-save or replace the file.") from exc


@contextmanager
def _no_budget() -> Iterator[None]:
    yield


def _too_large(name: str, width: int, height: int, max_pixels: int) -> str:
    return (
        f"{name} is too large: {width} x {height} = {width * height / 1e6:.0f} MP, above the limit "
        f"of {max_pixels / 1e6:.0f} MP; downscale it to index it."
    )


def _too_much_memory(name: str, mode: str, size: tuple[int, int], need: int, limit: int) -> str:
    return (
        f"{name} would take about {need / 2**30:.1f} GB of memory to decode ({size[0]} x "
        f"{size[1]} pixels, mode {mode}), above the limit of {limit / 2**30:.1f} GB; save it "
        "smaller or with 8 bits per channel to index it."
    )


def _orientation(img: Image.Image, name: str) -> int:
    """The EXIF orientation (1 to 8); a malformed EXIF block is ignored rather than fatal."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception as exc:  # bad EXIF data raises anything from struct.error to SyntaxError
        log.debug("Ignoring the unreadable EXIF orientation of %s: %s", name, exc)
        return 1
    return value if isinstance(value, int) else 1


def _transpose(img: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


def _reduce(img: Image.Image, target_size: int | None) -> Image.Image:
    """Shrink by an integer box reduction to a short side >= 2 x target_size; modes Pillow cannot
    reduce are first brought to one it can (16-bit and float to grey, palette to RGB(A))."""
    if target_size is None:
        return img
    factor = min(img.size) // (2 * target_size)
    if factor < 2:
        return img
    if img.mode in _WIDE_MODES:
        img = _wide_to_grey(img)
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode not in _REDUCIBLE_MODES:
        img = img.convert("L" if img.mode == "1" else "RGB")
    return img.reduce(factor)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: alpha composited on white, wide modes scaled to 8 bit."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
        img = img.convert(mode)
        if mode == "RGB":
            return img
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _WIDE_MODES:
        return _wide_to_grey(img).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _wide_to_grey(img: Image.Image) -> Image.Image:
    """16/32-bit or float to 8-bit grey, scaled by the maximum (floats up to 1 are 0..1), in
    strips of rows so that no full-size float copy is made."""
    width, height = img.size
    rows = max(1, STRIP_PIXELS // max(width, 1))
    strips = [(0, y, width, min(height, y + rows)) for y in range(0, height, rows)]
    top = 0.0
    for box in strips:
        strip = np.asarray(img.crop(box), dtype=np.float32)
        finite = strip[~np.isnan(strip)]
        if finite.size:
            top = max(top, float(finite.max()))
    if img.mode == "F" and top <= 1.0:
        top = 1.0
    scale = 255.0 / top if top > 255.0 or img.mode == "F" else 1.0
    grey = Image.new("L", img.size)
    for box in strips:
        strip = np.asarray(img.crop(box), dtype=np.float32)
        band = np.clip(np.nan_to_num(strip) * scale + 0.5, 0, 255).astype(np.uint8)
        grey.paste(Image.fromarray(band, "L"), box[:2])
    return grey


def prepare_photo(image: Image.Image, size: int) -> np.ndarray:
    """The model input: short side resized to ``size``, centre square; uint8 (size, size, 3)."""
    if image.mode != "RGB":
        image = to_rgb(image)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageLoadError("The photo has no pixels.")
    side = min(width, height)
    left, top = (width - side) / 2.0, (height - side) / 2.0
    out = image.resize(
        (size, size),
        Image.Resampling.BILINEAR,
        box=(left, top, left + side, top + side),
        reducing_gap=2.0,
    )
    return np.asarray(out, dtype=np.uint8)
