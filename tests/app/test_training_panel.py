"""The training panel, driven as a user would: a short real run on two Sketchy classes in a child
process (progress and curve points arrive, cancel, resume, finish, evaluate), using the new model
and searching with it; an invalid folder is refused before anything starts; a killed child is
reported with its logs; closing the app asks, and never hangs on a running child."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from app.gui.train.imagine_strip import TILE
from engine.models import load_checkpoint
from engine.paths import models_dir
from engine.sketch import read_quickdraw
from tests.app.conftest import shared_or_skip
from tests.app.test_training_preview import enlarged, pixels, placeholders
from training.runs import list_runs

CLASSES = "airplane, apple"
RUN_MS = 120_000


@pytest.fixture(autouse=True)
def no_child_left(monkeypatch):
    """Closing never waits on a dialog here, and no training process outlives its test."""
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    yield
    assert not multiprocessing.active_children(), "a training process is still running"


def small_run(window, sketchy, epochs: int = 2, steps: int = 2):
    """Open the panel and fill it for a tiny run: 2 classes, 96 px, a few steps."""
    panel = window.show_training_panel()
    form = panel.form
    assert form.set_data_folder(sketchy) is not None
    assert "104 classes" in form.data_summary.text()
    form.bits_combo.setCurrentIndex(form.bits_combo.findData(32))
    form.image_size_spin.setValue(96)
    form.epochs_spin.setValue(epochs)
    form.batch_spin.setValue(4)
    form.per_class_spin.setValue(2)
    form.max_steps_spin.setValue(steps)
    form.classes_edit.setText(CLASSES)
    form.device_combo.setCurrentText("cpu")
    return panel


def test_train_cancel_resume_evaluate_use_and_search(
    qtbot, make_window, library, photo_folder, wait_for_index
):
    sketchy = shared_or_skip("sketchy")
    library.add_root(photo_folder)
    window = make_window(auto_index=True)
    wait_for_index(window)
    panel = small_run(window, sketchy)
    assert panel.form.options_box.widgets, "method options are pre-filled from the procedure"

    steps = []
    panel.progressed.connect(lambda p: steps.append(p) if p.phase == "step" else None)
    assert panel.start()
    qtbot.waitUntil(lambda: panel.loss_plot.point_count() > 0, timeout=RUN_MS)
    assert panel.child_info["qt_loaded"] is False  # the child never imports Qt
    assert "Epoch " in panel.progress_label.text() and "samples/s" in panel.progress_label.text()
    assert "total" in panel.loss_plot.series
    with qtbot.waitSignal(panel.runEnded, timeout=RUN_MS):
        panel.cancel()
    record = panel.record
    assert record.status == "cancelled" and record.can_resume
    assert "cancelled" in panel.progress_label.text()
    assert " left" not in panel.progress_label.text()  # no ETA once nothing runs any more
    assert record.checkpoint.is_file() and "Resume" in panel.status_label.text()
    cut_at = steps[-1].global_step
    assert cut_at < steps[-1].total_steps
    assert panel.resume_button.isEnabled()

    with qtbot.waitSignals([panel.reportReady, panel.runEnded], timeout=RUN_MS):
        assert panel.resume()
    assert panel.record.status == "done"
    assert steps[-1].global_step == steps[-1].total_steps == 4
    assert any(s.global_step > cut_at for s in steps)
    assert panel.metric_plot.series["val mAP (all)"][-1][0] == 2  # one validation point per epoch
    report = panel.record.report
    gallery = report["protocol"]["gallery"]
    assert gallery < 200  # two classes' test photos: P@k with k no larger than the gallery
    assert set(report["metrics"]) == {"map_all", f"map_{gallery}", f"p_{gallery}"}
    assert report["protocol"]["classes"] == ["airplane", "apple"]
    html = panel.report_view.toHtml()
    assert "new model" in html and "baseline, 64-bit" in html and "Measuring" not in html
    assert f"a gallery of {gallery} photos" in html and "A small test set" in html
    assert panel.history.row_count() == 1 and panel.history.status_of(0) == "done"

    with qtbot.waitSignal(window.models.modelChanged, timeout=RUN_MS):
        installed = panel.use_model()
    assert installed.parent == models_dir() and installed.is_file()
    assert window.models.active.spec == str(installed)
    assert "32-bit" in window.model_label.text()
    wait_for_index(window)
    assert "is the active model" in panel.use_label.text()
    assert window.photos_label.text() == f"{len(list(photo_folder.rglob('*.jpg')))} photos indexed"

    drawing = next(read_quickdraw(shared_or_skip("quickdraw", "apple.ndjson.gz"), limit=1))
    with qtbot.waitSignal(window.search.resultsReady, timeout=60_000) as blocker:
        window.canvas.set_strokes(drawing.strokes, "apple")
    assert blocker.args[0].results and window.results_model.rowCount() > 0

    assert not panel.delete(list_runs()[0], confirm=False)  # the active model is kept
    assert "switch to another one first" in panel.status_label.text()


def test_a_gdh_run_shows_what_it_imagines_each_epoch_and_a_baseline_run_hides_it(
    qtbot, make_window
):
    sketchy = shared_or_skip("sketchy")
    window = make_window(auto_index=False)
    panel = window.show_training_panel()
    strip = panel.imagine_strip
    assert strip.isHidden()  # no run yet
    panel.form.method_combo.setCurrentText("gdh")
    small_run(window, sketchy, epochs=2, steps=1)
    panel.form.image_size_spin.setValue(64)
    panel.form.validate_check.setChecked(False)
    panel.form.options_box.widgets["init_codes"].setText("random")  # no pass over the data first
    panel.form.options_box.widgets["disc_channels"].setText("8")
    shown = []
    panel.previewed.connect(lambda payload: shown.append(payload["epoch"]))
    with qtbot.waitSignal(panel.runEnded, timeout=RUN_MS):
        assert panel.start()
        assert not strip.isHidden() and strip.images is None
    assert panel.record.status == "done" and shown == [1, 2]
    assert strip.epoch == 2 and "epoch 2 of 2" in strip.title.text()
    model = load_checkpoint(panel.record.checkpoint)  # the last epoch's weights
    np.testing.assert_array_equal(strip.images, model.imagine(strip.sketches))
    for i, label in enumerate(strip.image_labels):
        np.testing.assert_array_equal(pixels(label), enlarged(strip.images[i], TILE // 64))

    panel.form.method_combo.setCurrentText("baseline")
    small_run(window, sketchy, epochs=1, steps=50)
    with qtbot.waitSignal(panel.runEnded, timeout=RUN_MS):
        assert panel.start()
        assert strip.isHidden() and strip.images is None and strip.epoch is None
        assert placeholders(strip)  # cleared
        qtbot.waitUntil(lambda: bool(panel.child_info), timeout=RUN_MS)
        panel.cancel()
    assert shown == [1, 2]  # the baseline sent none


def test_an_invalid_folder_is_refused_before_anything_starts(qtbot, make_window, tmp_path):
    bad = tmp_path / "not_a_dataset"
    (bad / "photos" / "cats").mkdir(parents=True)
    (bad / "sketches").mkdir()
    window = make_window(auto_index=False)
    panel = window.show_training_panel()
    assert panel.form.set_data_folder(bad) is None
    with qtbot.waitSignal(panel.errorOccurred, timeout=5_000):
        assert not panel.start()
    assert "photos/cats/" in panel.form.data_summary.text()
    assert "photos/cats/" in panel.status_label.text()
    assert not panel.start_button.isEnabled()
    assert panel.process is None and not list_runs()
    assert window.message_bar.kind == "error"


def test_a_killed_child_is_reported_and_closing_asks(qtbot, make_window, monkeypatch):
    sketchy = shared_or_skip("sketchy")
    window = make_window(auto_index=False)
    panel = small_run(window, sketchy, epochs=1, steps=50)
    assert panel.start()
    qtbot.waitUntil(lambda: bool(panel.child_info), timeout=RUN_MS)
    with qtbot.waitSignal(panel.runEnded, timeout=30_000):
        os.kill(panel.child_info["pid"], signal.SIGKILL)
    record = panel.record
    assert record.status == "interrupted"
    assert "SIGKILL" in panel.status_label.text() and str(record.child_log) in record.message
    assert record.child_log.is_file()
    assert list_runs()[0].status == "interrupted"

    assert panel.start()  # again, and close the app while it runs
    qtbot.waitUntil(lambda: bool(panel.child_info) and panel.record.status == "running")
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    assert not window.close()  # "No": the run goes on
    assert panel.is_running()
    assert window.close()  # "Yes": stopped, its checkpoint state recorded, nothing left
    assert not panel.is_running()
    assert list_runs()[0].status in ("cancelled", "interrupted")
