"""Choosing another model in the toolbar: it loads off the GUI thread, encodes the photos that
lack codes for it, keeps the other model's codes, and switching back is instant."""

from __future__ import annotations

from engine.models import model_id, save_checkpoint
from engine.paths import models_dir
from engine.store import create_fresh


def test_switch_model_encodes_missing_codes_and_switches_back(
    qtbot, make_window, library, model, photo_folder, wait_for_index
):
    other = create_fresh("baseline", bits=32, image_size=96)
    checkpoint = save_checkpoint(other, models_dir() / "small32.safetensors", name="small32")
    library.add_root(photo_folder)
    good = len(list(photo_folder.rglob("*.jpg")))
    window = make_window(auto_index=True)
    wait_for_index(window)
    combo = window.model_combo
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert any("small32 (baseline, 32-bit)" in text for text in labels)

    window.canvas.set_strokes([], "nothing")  # an empty sketch: no search yet
    index = combo.findData(str(checkpoint))
    with qtbot.waitSignal(window.models.modelChanged, timeout=60_000):
        combo.activated.emit(index)  # what a user's choice in the combo box sends
    assert window.models.index_job.is_running()
    last = wait_for_index(window)
    assert last.phase == "done" and last.encoded == good  # every photo lacked a 32-bit code
    assert library.stats(model_id(other)).coded == good
    assert library.stats(model_id(model)).coded == good  # the first model's codes are kept
    assert "32-bit" in window.model_label.text()
    assert window.photos_label.text() == f"{good} photos indexed"
    assert window.settings.value("model") == str(checkpoint)

    from app.gui.library.model_control import INJECTED

    window.models.switch(INJECTED)  # back to the first model: no loading, no waiting
    assert window.models.active.model is model
    assert "64-bit" in window.model_label.text()
    assert combo.currentData() == INJECTED
    last = wait_for_index(window)
    assert last.phase == "done" and last.to_encode == 0  # nothing to encode again


def test_a_broken_checkpoint_is_reported_and_the_model_kept(qtbot, make_window, model):
    broken = models_dir() / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint at all")
    window = make_window(auto_index=False)
    with qtbot.waitSignal(window.models.errorOccurred, timeout=30_000):
        window.models.switch(str(broken))
    assert window.message_bar.kind == "error"
    assert "broken" in window.message_bar.text()
    assert window.models.active.model is model
