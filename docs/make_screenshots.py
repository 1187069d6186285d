"""Retake the README's screenshots from a real window: run under an X server (Xvfb), e.g.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py --photos /tmp/shots

It uses the app as a person would, in a private SKETCH_SEARCH_HOME and settings file: adds a
folder of real Sketchy photos (copied to ``--photos``, never into the repository), waits for it
to be indexed with the shipped model, draws a real QuickDraw drawing with mouse events, shrinks
the window to 1024x700, then searches by one of the results ("Similar"). Each picture is what
the X server shows of the window (``QScreen.grabWindow``), not a rendering of the widgets.
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
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sketch-search-shots-"))
    os.environ["SKETCH_SEARCH_HOME"] = str(home / "data")
    os.environ["SKETCH_SEARCH_SETTINGS"] = str(home / "settings.ini")
    photos = copy_photos(args.photos)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtGui import QCursor
    from PySide6.QtWidgets import QApplication

    from app.gui.main_window import MainWindow
    from app.gui.results import ResultRole
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
        picture = window.screen().grabWindow(window.winId())
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
    window.close()
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
