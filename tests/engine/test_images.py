"""Decoding users' photos: every mode to RGB, upright, bounded, and clear errors for bad files."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageLoadError
from engine.images import (
    PHOTO_EXTENSIONS,
    DecodeBudget,
    decode_bytes,
    load_photo,
    prepare_photo,
)

PHOTO = "sketchy/photos/airplane/n02691156_10151.jpg"


@pytest.fixture(scope="module")
def photo(shared_data) -> Image.Image:
    return Image.open(shared_data / PHOTO).convert("RGB")


def test_real_photos_load(shared_data):
    paths = sorted((shared_data / "sketchy/photos").glob("*/*.jpg"))[:12]
    assert len(paths) == 12
    for path in paths:
        img = load_photo(path)
        assert img.mode == "RGB" and img.size == (256, 256)
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"} <= PHOTO_EXTENSIONS
    assert all(s == s.lower() and s.startswith(".") for s in PHOTO_EXTENSIONS)


def test_loading_is_thread_safe(shared_data):
    paths = sorted((shared_data / "shoes_v1/photos").glob("*.jpg"))[:24]
    alone = [np.asarray(load_photo(p, target_size=128)) for p in paths]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(lambda p: np.asarray(load_photo(p, target_size=128)), paths))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


def grey_of(photo: Image.Image) -> np.ndarray:
    return np.asarray(photo.convert("L"), dtype=np.int16)


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [
        ("L", ".png"),
        ("1", ".png"),
        ("P", ".png"),
        ("LA", ".png"),
        ("RGBA", ".png"),
        ("CMYK", ".jpg"),
        ("CMYK", ".tif"),
        ("I;16", ".png"),
        ("I", ".tif"),
        ("F", ".tif"),
        ("RGB", ".webp"),
        ("RGB", ".bmp"),
    ],
)
def test_every_mode_becomes_rgb(tmp_path, photo, mode, suffix):
    grey = grey_of(photo)
    if mode == "I;16":
        source = Image.fromarray((grey * 257).astype(np.uint16))
    elif mode in ("I", "F"):
        source = Image.fromarray(grey / np.float32(255) if mode == "F" else grey * np.int32(257))
        source = source.convert(mode)
    else:
        source = photo.convert(mode)
    assert source.mode == mode
    path = tmp_path / f"photo{suffix}"
    source.save(path)
    loaded = load_photo(path)
    assert loaded.mode == "RGB" and loaded.size == photo.size
    if mode in ("L", "LA", "I;16", "I", "F"):  # the grey values survive (scaled back to 8 bit)
        assert np.abs(grey_of(loaded) - grey).mean() < 1.5
    elif mode != "1":  # lossy: JPEG, or a 216-colour dithered palette
        assert np.abs(grey_of(loaded) - grey).mean() < (12.0 if mode == "P" else 6.0)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :10] = (200, 0, 0, 255)  # opaque red; the rest is transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    palette = Image.fromarray(rgba[..., :3]).convert("P")
    palette.info["transparency"] = palette.getpixel((25, 5))
    palette.save(tmp_path / "p.gif", transparency=palette.getpixel((25, 5)))
    for name in ("a.png", "p.gif"):
        arr = np.asarray(load_photo(tmp_path / name))
        assert (arr[:, 12:] == 255).all(), name
        assert arr[5, 5, 0] > 150 and arr[5, 5, 1] < 60, name


def test_exif_orientation_is_applied(tmp_path):
    stored = np.full((40, 60, 3), 255, np.uint8)
    stored[:10, :10] = (255, 0, 0)  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=95)
    shown = np.asarray(load_photo(tmp_path / "o.jpg"))
    assert shown.shape == (60, 40, 3)
    assert shown[3, -4, 0] > 200 and shown[3, -4, 1] < 80  # now top-right
    assert shown[3, 3].min() > 200


def test_draft_decodes_a_big_jpeg_at_reduced_scale(tmp_path, photo):
    path = tmp_path / "big.jpg"
    photo.resize((4000, 3000), Image.Resampling.BICUBIC).save(path, quality=90)
    start = time.perf_counter()
    full = load_photo(path)
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    small = load_photo(path, target_size=224)
    draft_s = time.perf_counter() - start
    assert full.size == (4000, 3000)
    assert 224 <= min(small.size) <= 750 and small.size[0] > small.size[1]
    assert draft_s < full_s
    reference = np.asarray(full.resize(small.size, Image.Resampling.BOX), dtype=np.int16)
    assert np.abs(np.asarray(small, dtype=np.int16) - reference).mean() < 4.0


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50)
    arr = np.asarray(load_photo(tmp_path / "a.gif"))
    assert arr.shape == (16, 16, 3) and arr[8, 8, 0] > 200 and arr[8, 8, 1:].max() < 50


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming the given size, then an end: no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def jpeg_bytes(photo: Image.Image) -> bytes:
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("bomb.png", lambda p: png_header(100_000, 100_000), "too large"),
        ("empty.jpg", lambda p: b"", "empty"),
        ("notes.jpg", lambda p: b"shopping list: eggs, milk\n" * 20, "not a readable image"),
        ("corrupt.jpg", lambda p: (b := jpeg_bytes(p))[:600] + bytes(2000) + b[2600:], "corrupt"),
        ("cut.jpg", lambda p: (b := jpeg_bytes(p))[: len(b) // 2], "truncated"),
        ("cut.png", lambda p: (b := _png(p))[: len(b) // 2], "truncated"),
    ],
)
def test_bad_files_raise_with_a_reason(tmp_path, photo, name, make, reason):
    path = tmp_path / name
    path.write_bytes(make(photo))
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match=reason) as info:
        load_photo(path)
    assert name in str(info.value)
    assert time.perf_counter() - start < 1.0  # a bomb is refused from its header, not decoded


def _png(photo: Image.Image) -> bytes:
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    return buffer.getvalue()


def test_missing_folder_and_cap(tmp_path, photo):
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_photo(tmp_path / "gone.jpg")
    with pytest.raises(ImageLoadError, match="folder"):
        load_photo(tmp_path)
    photo.save(tmp_path / "p.png")
    with pytest.raises(ImageLoadError, match="too large"):
        load_photo(tmp_path / "p.png", max_pixels=10_000)


def test_prepare_photo_resizes_the_short_side_and_crops_the_centre():
    wide = np.zeros((200, 600, 3), np.uint8)
    wide[:, :200] = (255, 0, 0)
    wide[:, 200:400] = (0, 255, 0)
    wide[:, 400:] = (0, 0, 255)
    out = prepare_photo(Image.fromarray(wide), 112)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    assert (out[:, 2:-2, 1] > 240).all() and (out[:, 2:-2, [0, 2]] < 15).all()
    tall = prepare_photo(Image.fromarray(wide.transpose(1, 0, 2)).convert("RGBA"), 64)
    assert tall.shape == (64, 64, 3) and (tall[2:-2, :, 1] > 240).all()


def huge_grey_png(source: Path, path: Path, side: int, bits: int) -> Path:
    """A ``side`` x ``side`` grey PNG of ``bits`` per pixel, the real photo enlarged (nearest
    neighbour), written row by row so that making it takes no big array: repeated rows are
    'Up'-filtered zeros, so a 177 MP picture is a file of about half a megabyte."""
    grey = np.asarray(Image.open(source).convert("L"), dtype=np.uint16)
    if bits == 16:
        grey = grey * 257
    height, width = grey.shape
    columns = np.arange(side) * width // side
    dtype = ">u2" if bits == 16 else "u1"
    same_again = b"\x02" + bytes(side * bits // 8)
    packer, parts, previous = zlib.compressobj(6), [], -1
    for y in range(side):
        row = y * height // side
        if row == previous:
            parts.append(packer.compress(same_again))
        else:
            parts.append(packer.compress(b"\x00" + grey[row, columns].astype(dtype).tobytes()))
            previous = row
    parts.append(packer.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, bits, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )
    return path


HUGE_SIDE = 13300  # 177 MP: under the 178 MP pixel cap


@pytest.fixture(scope="module")
def huge_pngs(tmp_path_factory, shared_data) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("huge")
    return {
        bits: huge_grey_png(shared_data / PHOTO, folder / f"scan{bits}.png", HUGE_SIDE, bits)
        for bits in (8, 16)
    }


PEAK_SCRIPT = """
import re, sys
import numpy as np
from PIL import Image
from engine.images import load_photo, prepare_photo
small = prepare_photo(load_photo(sys.argv[1], target_size=224), 224)
photo = prepare_photo(Image.open(sys.argv[2]).convert("L"), 224)
diff = np.abs(small.astype(np.int16) - photo.astype(np.int16)).mean()
with open("/proc/self/status") as fh:  # this process's peak, not its parent's before exec
    peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", fh.read()).group(1))
print(peak_kb / 1024, diff)
"""


def test_a_huge_16bit_png_decodes_in_bounded_memory(huge_pngs, shared_data):
    """Decoding the 16-bit scan took about 2.9 GB (float32 copies at full size); the bytes per
    pixel are now counted, and the conversion runs in strips and before the RGB image."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("measures the peak memory in /proc (Linux)")
    path = huge_pngs[16]
    assert path.stat().st_size < 2_000_000
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path), str(shared_data / PHOTO)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    peak_mb, diff = map(float, out.stdout.split())
    assert peak_mb < 1000, f"peak resident memory {peak_mb:.0f} MB"
    assert diff < 6.0  # and it is still the photo (grey, a little softer)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_decode_cap_counts_bytes_by_mode(huge_pngs):
    """The same pixels cost twice the bytes at 16 bits: under a 400 MB cap the 8-bit scan loads
    and the 16-bit one is refused from its header, before any pixel is decoded."""
    assert decode_bytes("L", (HUGE_SIDE, HUGE_SIDE), 224) == HUGE_SIDE**2
    assert decode_bytes("I;16", (HUGE_SIDE, HUGE_SIDE), 224) == 3 * HUGE_SIDE**2
    assert decode_bytes("RGB", (100, 100)) == 2 * decode_bytes("RGB", (100, 100), 224)
    cap = 400_000_000
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match="GB of memory") as info:
        load_photo(huge_pngs[16], target_size=224, max_bytes=cap)
    assert time.perf_counter() - start < 1.0
    assert "scan16.png" in str(info.value) and "8 bits" in str(info.value)
    assert min(load_photo(huge_pngs[8], target_size=224, max_bytes=cap).size) >= 224


def test_a_decode_budget_bounds_the_big_decodes_running_at_once(tmp_path, photo):
    """Six 6 MP PNGs decoded by six threads with room for two at once: never more bytes at
    once than the budget, some decodes waited, and every photo decoded whole."""
    paths = []
    for i in range(6):
        big = photo.resize((3000, 2000), Image.Resampling.BILINEAR).rotate(i * 60)
        paths.append(tmp_path / f"big{i}.png")
        big.save(paths[-1], compress_level=1)
    need = decode_bytes("RGB", (3000, 2000), 224)
    budget = DecodeBudget(2 * need + need // 2)

    def load(path):
        return load_photo(path, target_size=224, budget=budget)

    with ThreadPoolExecutor(max_workers=6) as pool:
        images = list(pool.map(load, paths))
    assert [img.size for img in images] == [(750, 500)] * 6  # 3000 x 2000 reduced by 4
    assert 2 * need <= budget.peak <= budget.capacity and budget.waits >= 1
    with pytest.raises(ValueError):
        DecodeBudget(0)
