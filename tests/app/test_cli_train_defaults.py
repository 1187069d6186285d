"""`sketch-search train` starts from the method's own recipe (its procedure's train_defaults, per
data layout), as the Train panel pre-fills it: before, the command line fell back to
TrainConfig's generic values (no warm-up, weight decay 1e-4) and trained another recipe."""

import json

from app.cli import build_parser
from app.commands.train import build_config
from app.gui.train.form import train_defaults


def config_for(argv, tmp_path=None):
    return build_config(build_parser().parse_args(["train", *argv]))


def test_the_command_line_uses_the_methods_recipe_as_the_panel_does(shared_data):
    data = str(shared_data / "sketchy")
    config = config_for(["--method", "anchor", "--data", data])
    panel = train_defaults("anchor", "category")
    for key in ("lr", "weight_decay", "warmup_steps", "batch_size", "schedule", "freeze_blocks"):
        assert getattr(config, key) == panel[key], key
    assert config.warmup_steps == 50 and config.weight_decay == 0.05


def test_flags_and_the_config_file_win_over_the_methods_recipe(shared_data, tmp_path):
    options = tmp_path / "options.json"
    options.write_text(json.dumps({"warmup_steps": 7, "lr": 1e-2}))
    argv = ["--method", "anchor", "--data", str(shared_data / "sketchy"), "--config", str(options)]
    config = config_for([*argv, "--lr", "5e-4"])
    assert config.lr == 5e-4  # the flag over the file over the recipe
    assert config.warmup_steps == 7  # the file over the recipe
    assert config.weight_decay == 0.05  # the recipe where neither says


def test_a_methods_recipe_per_layout_follows_the_data(shared_data):
    gdh = config_for(["--method", "gdh", "--data", str(shared_data / "sketchy")])
    assert (gdh.lr, gdh.batch_size, gdh.schedule) == (2e-4, 32, "constant")
    base = config_for(["--method", "baseline", "--data", str(shared_data / "shoes_v1")])
    assert base.to_dict() == {**base.to_dict(), **train_defaults("baseline", "fine_grained")}


def test_a_new_dsh_model_takes_its_recipes_model_options_a_fine_tune_keeps_its_own(
    shared_data, tmp_path
):
    data = str(shared_data / "sketchy")
    config = config_for(["--method", "dsh", "--data", data])
    assert config.model["image_size"] == 160 and config.model["fc_batchnorm"] is True
    flags = config_for(["--method", "dsh", "--data", data, "--image-size", "128"])
    assert flags.model["image_size"] == 128 and flags.model["fc_batchnorm"] is True
    options = tmp_path / "paper.json"
    options.write_text(json.dumps({"model": {"fc_batchnorm": False}}))
    paper = config_for(["--method", "dsh", "--data", data, "--config", str(options)])
    assert paper.model["fc_batchnorm"] is False
    tune = config_for(["--method", "dsh", "--data", data, "--init-from", str(tmp_path / "x")])
    assert "fc_batchnorm" not in tune.model and "image_size" not in tune.model
