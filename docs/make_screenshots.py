"""Retake the README's screenshots from a real window: run under an X server (Xvfb), e.g.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py --photos /tmp/shots

It uses the app as a person would, in a private SKETCH_SEARCH_HOME and settings file: adds a
folder of real Sketchy photos (copied to ``--photos``, never into the repository), waits for it
to be indexed with the shipped model, draws a real QuickDraw drawing with mouse events, shrinks
the window to 1024x700, then searches by one of the results ("Similar"); with ``--train``, a
short real training run in the Train panel (a few minutes). Each picture is what the X server
shows where the window is (``QScreen.grabWindow``), not a rendering of the widgets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' mouse replay (tests.app.test_search_as_you_draw)
DATA = REPO.parent / "shared" / "data"
CLASSES = ("airplane", "bicycle", "guitar", "cup", "car_(sedan)", "chair", "hat", "teapot")
PER_CLASS = 8


def copy_photos(target: Path) -> Path:
    """A small photo folder of real Sketchy photos, one subfolder a class."""
    for cls in CLASSES:
        folder = target / cls
        folder.mkdir(parents=True, exist_ok=True)
        for photo in sorted((DATA / "sketchy" / "photos" / cls).glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, folder / photo.name)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, required=True, help="where to copy the photos")
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--word", default="airplane", help="the QuickDraw drawing to draw")
    parser.add_argument("--drawing", type=int, default=3, help="which drawing of the word")
    parser.add_argument("--train", action="store_true", help="also a short run in the Train panel")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sketch-search-shots-"))
    os.environ["SKETCH_SEARCH_HOME"] = str(home / "data")
    os.environ["SKETCH_SEARCH_SETTINGS"] = str(home / "settings.ini")
    photos = copy_photos(args.photos)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtGui import QCursor
    from PySide6.QtWidgets import QApplication

    from app.gui.main_window import MainWindow
    from app.gui.search.results import ResultRole
    from engine.sketch import read_quickdraw
    from tests.app.test_search_as_you_draw import replay

    app = QApplication(sys.argv[:1])
    app.setApplicationName("SketchSearch")

    def wait(condition, timeout_s: float = 300.0) -> None:
        loop, waited = QEventLoop(), 0.0
        while not condition():
            QTimer.singleShot(100, loop.quit)
            loop.exec()
            waited += 0.1
            if waited > timeout_s:
                raise TimeoutError("the app did not get there in time")

    def settle(ms: int = 600) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shoot(window, name: str) -> None:
        settle()
        box = window.geometry()  # the screen where the window is: its tooltip too
        picture = window.screen().grabWindow(0, box.x(), box.y(), box.width(), box.height())
        path = args.out / name
        picture.save(str(path))
        print(f"{path}: {picture.width()}x{picture.height()}")

    window = MainWindow()
    window.resize(1400, 860)
    window.show()
    window.start_model()
    wait(lambda: window.models.active is not None)
    window.library_panel.add_folder(photos)
    wait(lambda: not window.models.index_job.is_running() and window.models.active.searcher.size)
    drawing = list(read_quickdraw(DATA / "quickdraw" / f"{args.word}.ndjson.gz"))[args.drawing]
    replay(window.canvas, drawing.strokes)
    wait(lambda: window.results_model.rowCount() > 0 and not window.search.is_busy())
    shoot(window, "screenshot.png")

    window.resize(1024, 700)
    wait(lambda: window.width() == 1024)
    view = window.results_view  # the pointer on the second tile: its buttons show
    settle()
    tile = view.visualRect(window.results_model.index(1))
    QCursor.setPos(view.viewport().mapToGlobal(tile.center()))
    shoot(window, "screenshot-1024.png")

    second = window.results_model.index(1).data(ResultRole)  # a tile's Similar
    window.more_like(second.path)
    wait(lambda: window.canvas.is_photo() and not window.search.is_busy())
    shoot(window, "screenshot-photo-query.png")
    if args.train:
        shoot_training(window, shoot, wait)
    window.close()
    shutil.rmtree(home, ignore_errors=True)
    return 0


def shoot_training(window, shoot, wait) -> None:
    """A short real run on six Sketchy classes (3 epochs of 6 steps, 96 px), evaluated, in the
    Train panel, with the tooltip of a method option shown."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QScrollArea, QToolTip

    panel = window.show_training_panel()
    panel.resize(1200, 820)
    form = panel.form
    form.set_data_folder(DATA / "sketchy")
    form.image_size_spin.setValue(96)
    form.epochs_spin.setValue(3)
    form.batch_spin.setValue(12)
    form.per_class_spin.setValue(2)
    form.max_steps_spin.setValue(6)
    form.classes_edit.setText("airplane, apple, bicycle, cup, guitar, hat")
    form.device_combo.setCurrentText("cpu")
    done = []
    panel.reportReady.connect(lambda: done.append(True))
    panel.start()
    wait(lambda: bool(done), timeout_s=1200)
    field = form.options_box.widgets["w_pair"]
    scroll = field.parentWidget()
    while not isinstance(scroll, QScrollArea):
        scroll = scroll.parentWidget()
    scroll.ensureWidgetVisible(field)
    wait(lambda: field.visibleRegion().boundingRect().height() > 10)
    QToolTip.showText(field.mapToGlobal(QPoint(0, 2 * field.height() + 8)), field.toolTip(), field)
    shoot(panel, "screenshot-train.png")


if __name__ == "__main__":
    sys.exit(main())
