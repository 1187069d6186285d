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
