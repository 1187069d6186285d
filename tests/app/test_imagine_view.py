"""The "what the model imagines" view: a real (untrained, seeded) GDH model draws a photo of real
Sketchy sketches off the GUI thread; a model without a generator is said to be unable to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.gui.search.imagine_view import (
    DISPLAY_SIZE,
    EMPTY_TEXT,
    ImagineView,
    imagine_query,
)
from app.gui.workers import JobRunner
from engine.models import create
from engine.sketch import load_sketch

from .conftest import shared_or_skip


@pytest.fixture(scope="module")
def gdh_model():
    torch.manual_seed(0)
    model = create("gdh", image_size=64, pretrained=False, gen_channels=4, gi_blocks=1, gs_blocks=1)
    return model.eval()


@pytest.fixture
def sketches():
    folder = shared_or_skip("sketchy", "sketches")
    paths = sorted(folder.glob("airplane/*.png"))[:1] + sorted(folder.glob("cup/*.png"))[:1]
    assert len(paths) == 2
    return [load_sketch(p) for p in paths]


@pytest.fixture
def view(qtbot):
    runner = JobRunner()
    current = {"query": None}
    widget = ImagineView(runner, lambda: current["query"], debounce_ms=10)

    def settle(view) -> None:  # before pytest-qt closes and deletes the view, ahead of teardown
        qtbot.waitUntil(lambda: runner.running() == 0 and not view.is_busy(), timeout=30_000)

    qtbot.addWidget(widget, before_close_func=settle)
    widget.current = current
    yield widget
    assert runner.wait()


def test_shows_what_gdh_imagines_and_follows_the_sketch(qtbot, view, gdh_model, sketches):
    view.current["query"] = sketches[0]
    with qtbot.waitSignal(view.imageReady, timeout=30_000) as first:
        view.set_model(gdh_model)
    image = first.args[0]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert view.image is image
    pixmap = view.picture.pixmap()
    assert (pixmap.width(), pixmap.height()) == (DISPLAY_SIZE, DISPLAY_SIZE)
    assert not view.picture.isHidden()
    np.testing.assert_array_equal(image, imagine_query(gdh_model, sketches[0]))
    assert "imagines" in view.message.text()

    view.current["query"] = sketches[1]
    with qtbot.waitSignal(view.imageReady, timeout=30_000) as second:
        view.sketch_changed()
    assert not np.array_equal(second.args[0], image)
    np.testing.assert_array_equal(view.image, imagine_query(gdh_model, sketches[1]))


def test_newest_sketch_wins_when_changed_during_a_run(qtbot, view, gdh_model, sketches):
    view.current["query"] = sketches[0]
    view.set_model(gdh_model)  # a run starts at once
    view.current["query"] = sketches[1]
    view.sketch_changed(debounce=False)  # newer sketch while it runs
    qtbot.waitUntil(lambda: not view.is_busy() and view.image is not None, timeout=30_000)
    np.testing.assert_array_equal(view.image, imagine_query(gdh_model, sketches[1]))


def test_empty_sketch_asks_for_one(qtbot, view, gdh_model):
    view.set_model(gdh_model)
    assert view.message.text() == EMPTY_TEXT and view.image is None


def test_a_model_without_a_generator_says_it_cannot(qtbot, view, model, sketches):
    view.current["query"] = sketches[0]
    view.set_model(model)  # the baseline: no G_I
    assert "cannot imagine" in view.message.text() and "baseline" in view.message.text()
    assert view.image is None and view.picture.pixmap().isNull()
    assert view.picture.isHidden()  # the message is not pushed below an empty picture
    assert not view.is_busy()


def test_main_window_opens_the_view_following_the_active_model(qtbot, make_window):
    window = make_window(auto_index=False)
    dock = window.show_imagine_view()
    assert not dock.isHidden() and window.show_imagine_view() is dock
    assert "cannot imagine" in dock.view.message.text()  # the window's model is the baseline
