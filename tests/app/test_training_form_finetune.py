"""The training form's "Start from": the installed checkpoints of the selected method are offered
beside a new model; choosing one shows its architecture in disabled fields and the config
fine-tunes it; going back gives the fields back as they were; a chosen file of another method
switches the method, an unreadable one is refused with its reason."""

from __future__ import annotations

import pytest
import torch

from app.gui.train.form import CHOOSE_FILE, NEW_MODEL, TrainingForm
from engine.models import create, save_checkpoint
from engine.paths import models_dir
from engine.store import installed_checkpoints
from tests.app.conftest import shared_or_skip

ARCH = {"bits": 32, "image_size": 96, "pretrained": False, "hidden": 16}


@pytest.fixture
def form(qtbot):
    torch.manual_seed(0)
    # a user's own checkpoint, installed where the app's model list finds it
    save_checkpoint(create("baseline", **ARCH), models_dir() / "mine.safetensors", name="mine")
    form = TrainingForm()
    qtbot.addWidget(form)
    form.method_combo.setCurrentText("baseline")
    return form


def entries(form) -> list[tuple[str, str | None]]:
    combo = form.start_combo
    return [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]


def architecture_enabled(form) -> list[bool]:
    return [w.isEnabled() for w in (form.backbone_combo, form.bits_combo, form.image_size_spin)]


def test_checkpoints_of_the_method_are_offered(form):
    listed = entries(form)
    assert listed[0] == (NEW_MODEL, None) and listed[-1][0] == CHOOSE_FILE
    expected = [str(i.path) for i in installed_checkpoints() if i.method == "baseline"]
    assert [data for _text, data in listed[1:-1]] == expected
    assert str(models_dir() / "mine.safetensors") in expected
    assert form.start_checkpoint() is None and all(architecture_enabled(form))
    form.method_combo.setCurrentText("dsh")
    listed = [data for _text, data in entries(form)[1:-1]]
    assert listed == [str(i.path) for i in installed_checkpoints() if i.method == "dsh"]


def test_choosing_a_checkpoint_fills_and_disables_the_architecture(form):
    form.set_data_folder(shared_or_skip("sketchy"))
    form.bits_combo.setCurrentIndex(form.bits_combo.findData(128))
    form.image_size_spin.setValue(192)
    before = form._architecture()
    mine = str(models_dir() / "mine.safetensors")
    form.start_combo.setCurrentIndex(form.start_combo.findData(mine))
    assert form._architecture() == ("efficientnet_lite0", 32, 96)
    assert architecture_enabled(form) == [False, False, False]
    assert "mine.safetensors" in form.start_note.text()
    config = form.build_config()
    assert config.init_from == mine
    defaults = {"backbone": "efficientnet_lite0", "codes": "sign", "code_fit": "photos"}
    assert config.model == ARCH | defaults  # the checkpoint's whole model config

    form.start_combo.setCurrentIndex(0)  # back to a new model: the fields as they were
    assert all(architecture_enabled(form)) and form._architecture() == before
    config = form.build_config()
    assert config.init_from is None
    assert config.model == {"bits": 128, "backbone": "efficientnet_lite0", "image_size": 192}


def test_a_chosen_file_switches_the_method_and_a_bad_one_is_refused(form, tmp_path):
    torch.manual_seed(0)
    other = save_checkpoint(
        create("dssa", bits=32, image_size=96, pretrained=False), tmp_path / "d.safetensors"
    )
    info = form.choose_checkpoint_file(other)
    assert info is not None and form.method() == "dssa"
    assert form.start_checkpoint().path == other.resolve()
    assert form._architecture()[1:] == (32, 96) and not any(architecture_enabled(form))
    form.set_data_folder(shared_or_skip("shoes_v1"))  # a layout change refills the defaults...
    assert form.start_checkpoint() is not None  # ... and keeps the checkpoint and its values
    assert form._architecture()[1:] == (32, 96) and not any(architecture_enabled(form))
    assert form.build_config().init_from == str(other.resolve())

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    assert form.choose_checkpoint_file(broken) is None
    assert "not a readable safetensors checkpoint" in form.start_note.text()
    assert form.start_checkpoint().path == other.resolve()  # the choice before stays

    form.method_combo.setCurrentText("baseline")  # another method: back to a new model
    assert form.start_checkpoint() is None and all(architecture_enabled(form))


def test_choose_file_entry_asks_for_a_file_and_a_cancel_keeps_the_choice(
    form, tmp_path, monkeypatch
):
    from PySide6.QtWidgets import QFileDialog

    torch.manual_seed(1)
    path = save_checkpoint(create("baseline", **ARCH), tmp_path / "own.safetensors")
    answers = [(str(path), ""), ("", "")]  # the user picks the file, then cancels a second time
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: answers.pop(0))
    choose = form.start_combo.findText(CHOOSE_FILE)
    form.start_combo.setCurrentIndex(choose)
    assert form.start_checkpoint().path == path.resolve()
    form.start_combo.setCurrentIndex(form.start_combo.findText(CHOOSE_FILE))
    assert form.start_checkpoint().path == path.resolve() and not answers
    assert not any(architecture_enabled(form))
