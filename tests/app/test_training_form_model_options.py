"""The training form's "Model options": every method's network settings beyond the architecture
fields (the papers' ablation switches, generator sizes, ...) can be set from the Train panel; a
changed one reaches the run's model config, a bad one is refused by name, and a checkpoint to
fine-tune shows its own in disabled fields, giving the person's back afterwards."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from app.gui.train.form import ARCHITECTURE_FIELDS, TrainingForm
from engine.errors import ConfigError
from engine.models import create, get_method, save_checkpoint
from engine.paths import models_dir
from tests.app.conftest import shared_or_skip
from training.methods import method_model_defaults

GDH_CPU = {"image_size": 64, "pretrained": False, "gen_channels": 4, "gi_blocks": 1}


@pytest.fixture
def form(qtbot):
    form = TrainingForm()
    qtbot.addWidget(form)
    form.set_data_folder(shared_or_skip("sketchy"))
    return form


@pytest.mark.parametrize("method", ["baseline", "dssa", "semi3", "dsh", "gdh"])
def test_each_method_offers_its_model_options_at_their_defaults(form, method):
    form.method_combo.setCurrentText(method)
    fields = {
        f.name: f.default
        for f in dataclasses.fields(get_method(method).config_class)
        if f.name not in ARCHITECTURE_FIELDS
    }
    assert set(form.model_options.widgets) == set(fields)
    assert form.model_options.values() == {}  # nothing changed yet
    assert form.model_options.isVisibleTo(form) == bool(fields)
    recipe = method_model_defaults(method, "category")
    for name, value in recipe.items():  # the method's recipe where it has one (DSH)
        if name == "image_size":
            assert form.image_size_spin.value() == value
        else:
            widget = form.model_options.widgets[name]
            shown = widget.isChecked() if isinstance(value, bool) else float(widget.text())
            assert shown == value, name
    config = form.build_config()
    assert set(fields) & set(config.model) == set(recipe) - {"image_size"}
    for name, value in recipe.items():
        assert config.model[name] == value, name


def test_dsh_starts_from_its_recipe_and_the_person_can_go_back_to_the_paper(form, tmp_path):
    """DSH's Train panel offers the shipped dsh-64's model options (160 px, BatchNorm after the
    FCs), and the model it builds has them; unticking FC BatchNorm gives the paper's network."""
    form.method_combo.setCurrentText("dsh")
    config = form.build_config()
    assert config.model["image_size"] == 160 and config.model["fc_batchnorm"] is True
    model = create("dsh", **{**config.model, "pretrained": False})
    assert model.config.fc_batchnorm and model.config.image_size == 160
    form.model_options.widgets["fc_batchnorm"].setChecked(False)
    assert form.build_config().model["fc_batchnorm"] is False


def test_changed_model_options_reach_the_run_config(form):
    form.method_combo.setCurrentText("gdh")
    widgets = form.model_options.widgets
    widgets["attention"].setChecked(False)  # Table 5: without the attention layer
    widgets["skip"].setChecked(True)
    widgets["gen_channels"].setText("8")
    widgets["mask_threshold"].setText("0.25")
    config = form.build_config()
    assert config.model["attention"] is False and config.model["skip"] is True
    assert config.model["gen_channels"] == 8 and isinstance(config.model["gen_channels"], int)
    assert config.model["mask_threshold"] == 0.25
    assert "gi_blocks" not in config.model
    model = create("gdh", **{**config.model, "pretrained": False})
    assert model.g_s.attention is None and model.g_i.skip


def test_a_bad_model_option_is_refused_by_name(form):
    form.method_combo.setCurrentText("gdh")
    form.model_options.widgets["gi_blocks"].setText("nine")
    with pytest.raises(ConfigError, match="Model options: gi_blocks must be a number"):
        form.build_config()
    form.model_options.widgets["gi_blocks"].setText("40")  # a number the model refuses
    with pytest.raises(ConfigError, match="gi_blocks"):
        form.build_config()


def test_a_checkpoint_shows_its_model_options_and_gives_the_persons_back(form):
    torch.manual_seed(0)
    path = models_dir() / "small-gdh.safetensors"
    save_checkpoint(create("gdh", **GDH_CPU, skip=True), path, name="small-gdh")
    form.method_combo.setCurrentText("gdh")
    widgets = form.model_options.widgets
    widgets["attention"].setChecked(False)
    widgets["gs_blocks"].setText("3")
    form.start_combo.setCurrentIndex(form.start_combo.findData(str(path)))
    assert not form.model_options.isEnabled()
    assert widgets["skip"].isChecked() and widgets["attention"].isChecked()
    assert (widgets["gen_channels"].text(), widgets["gi_blocks"].text()) == ("4", "1")
    config = form.build_config()
    assert config.init_from == str(path) and config.model["skip"] is True
    form.start_combo.setCurrentIndex(0)  # back to a new model
    assert form.model_options.isEnabled()
    assert not widgets["attention"].isChecked() and widgets["gs_blocks"].text() == "3"
    assert not widgets["skip"].isChecked() and widgets["gen_channels"].text() == "32"
    assert form.build_config().model["gs_blocks"] == 3


def test_gdh_runs_start_from_the_papers_optimiser_settings(form):
    form.method_combo.setCurrentText("gdh")
    config = form.build_config()
    assert (config.lr, config.batch_size, config.schedule) == (2e-4, 32, "constant")
    form.method_combo.setCurrentText("baseline")
    assert form.build_config().lr != 2e-4
