"""Fixtures for training tests: tiny data set folders made on the fly, and a few real classes."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

FEW_CLASSES = ("airplane", "apple", "banana", "car_(sedan)", "chair", "cup")


def draw_sketch(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = Image.new("L", (64, 64), 255)
    draw = ImageDraw.Draw(img)
    pts = [tuple(int(v) for v in rng.integers(5, 59, 2)) for _ in range(4)]
    draw.line(pts, fill=0, width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def photo(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def category_folder(tmp_path) -> Path:
    """photos/<c>/p<i>.jpg and sketches/<c>/p<i>-1.png for 2 classes of 3 photos."""
    root = tmp_path / "cat"
    for c, name in enumerate(("cats", "dogs")):
        for i in range(3):
            photo(root / "photos" / name / f"p{i}.jpg", 10 * c + i)
            draw_sketch(root / "sketches" / name / f"p{i}-1.png", 10 * c + i)
    return root


@pytest.fixture
def sketchy(shared_data) -> Path:
    root = shared_data / "sketchy"
    if not (root / "split.json").is_file():
        pytest.skip(f"{root} is missing")
    return root
