"""Decoding users' photos safely, and turning a photo into a model input.

Choices:
- ``load_photo`` reads the header first and refuses an image whose width x height exceeds
  ``max_pixels`` before any pixel is decoded (decompression bombs). ``MAX_PIXELS`` is 178 MP: above
  every common camera and phone default (a 108 MP phone photo loads), and just under Pillow's own
  hard limit (2 x ``Image.MAX_IMAGE_PIXELS``), which also still applies. Pillow's
  ``DecompressionBombWarning`` (89 MP) is silenced once at import since our cap replaces it.
- With ``target_size``, JPEGs decode in draft mode (DCT scaling by 1/2, 1/4 or 1/8) to the smallest
  scale whose sides are both >= target_size: a 12 MP photo for a 224 px model decodes at 1/8.
- EXIF orientation is applied (a broken EXIF block is ignored, not fatal); animations give their
  first frame; every mode becomes RGB: transparency is composited on white, 16/32-bit and float
  images are scaled to 8 bit by their maximum, CMYK uses Pillow's conversion.
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

import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from engine.errors import ImageLoadError

log = logging.getLogger(__name__)

MAX_PIXELS = 178_000_000
"""Default cap on width x height, checked from the header before decoding."""

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


def load_photo(
    path: str | os.PathLike,
    target_size: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Decode a photo file to an RGB image, upright; raise ImageLoadError with a reason if not."""
    path = Path(path)
    name = path.name
    try:
        if path.is_dir():
            raise ImageLoadError(f"{name} is a folder, not a photo.")
        if path.stat().st_size == 0:
            raise ImageLoadError(f"{name} is empty (0 bytes); the copy may have failed.")
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageLoadError(_too_large(name, width, height, max_pixels))
            if target_size is not None:
                img.draft("RGB", (target_size, target_size))
            img.load()
            return to_rgb(_upright(img, name))
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


def _too_large(name: str, width: int, height: int, max_pixels: int) -> str:
    return (
        f"{name} is too large: {width} x {height} = {width * height / 1e6:.0f} MP, above the limit "
        f"of {max_pixels / 1e6:.0f} MP; downscale it to index it."
    )


def _upright(img: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block is ignored rather than fatal."""
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception as exc:  # bad EXIF data raises anything from struct.error to SyntaxError
        log.debug("Ignoring the unreadable EXIF orientation of %s: %s", name, exc)
        return img
    return img if upright is None else upright


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
        arr = np.asarray(img, dtype=np.float32)
        top = float(np.nanmax(arr)) if arr.size else 0.0
        if mode == "F" and top <= 1.0:
            top = 1.0
        scale = 255.0 / top if top > 255.0 or mode == "F" else 1.0
        grey = np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


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
