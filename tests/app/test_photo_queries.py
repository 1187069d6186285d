"""A photo opened or pasted as the query is searched as a photo (the model's photo encoder:
"more like this photo"), a sketch image as a sketch; "As photo" switches between the two
(before, a photo was normalised as a sketch and found 0 of 10 of its kind)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtGui import QGuiApplication, QImage

from app.gui.search.canvas import PhotoQuery
from app.gui.search.sketch_io import looks_like_photo
from tests.app.conftest import shared_or_skip


def test_photos_and_sketches_are_told_apart_on_real_data():
    sketchy = shared_or_skip("sketchy")
    sketches = sorted((sketchy / "sketches").glob("*/*.png"))[::97][:25]
    photos = sorted((sketchy / "photos").glob("*/*.jpg"))[::97][:25]
    shoes = sorted(shared_or_skip("shoes_v1", "photos").glob("*.jpg"))[::9][:12]
    edges = sorted(shared_or_skip("shoes_v1", "edges").glob("*.png"))[::9][:12]

    def photo(path) -> bool:
        return looks_like_photo(np.asarray(Image.open(path).convert("RGB")))

    assert not any(photo(p) for p in sketches + edges)
    assert all(photo(p) for p in photos)
    assert sum(photo(p) for p in shoes) >= len(shoes) - 1  # product shots on white


def test_an_opened_photo_searches_for_photos_like_it(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    window.show()
    qtbot.waitExposed(window)
    wait_for_index(window)
    photo = sorted(photo_folder.rglob("*.jpg"))[3]
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        window.open_sketch(photo)
    assert window.canvas.is_photo() and isinstance(window.canvas.query(), PhotoQuery)
    found = blocker.args[0].results
    assert found[0].path == photo and found[0].distance == 0  # the photo encoder's own code
    assert window.photo_action.isEnabled() and window.photo_action.isChecked()
    assert not window.picture_bar.isHidden()

    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        window.photo_action.trigger()  # "As photo" off: the picture is searched as a sketch
    assert not window.canvas.is_photo()
    assert isinstance(window.canvas.query(), np.ndarray)
    assert "with this sketch" in window.picture_label.text()
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000):
        window.undo_action.trigger()  # undo brings the photo query back
    assert window.canvas.is_photo()


def test_a_pasted_photo_is_a_photo_query_and_a_stroke_starts_a_sketch(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    from tests.app.test_canvas import draw_line

    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    window.show()
    qtbot.waitExposed(window)
    wait_for_index(window)
    photo = sorted(photo_folder.rglob("*.jpg"))[5]
    QGuiApplication.clipboard().setImage(QImage(str(photo)))
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        window.paste()
    assert window.canvas.is_photo()
    assert blocker.args[0].results[0].path == photo  # pixels, not the file: still itself first

    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000):
        draw_line(window.canvas, (40, 60), (200, 160))
    assert not window.canvas.is_photo() and window.canvas.state().background is None
    assert len(window.canvas.strokes()) == 1 and window.picture_bar.isHidden()


def test_a_sketch_image_is_still_a_sketch(qtbot, make_window):
    window = make_window(auto_index=False)
    sketch = sorted(shared_or_skip("sketchy", "sketches").glob("*/*.png"))[0]
    window.open_sketch(sketch)
    assert not window.canvas.is_photo()
    assert isinstance(window.canvas.query(), np.ndarray)
    assert not window.photo_action.isChecked() and window.photo_action.isEnabled()
