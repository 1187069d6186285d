"""`sketch-search train` with the training-data flags of issue 16: --hold-out (a named set or
class names), --extra-data, --doodles and --doodles-per-class become the TrainConfig fields, and
a bad combination is one clear line."""

import pytest

from app.cli import build_parser, main
from app.commands.train import build_config


def config_of(*flags: str):
    return build_config(build_parser().parse_args(["train", "--method", "baseline", *flags]))


def test_flags_become_config_fields(tmp_path):
    config = config_of(
        "--data", str(tmp_path), "--hold-out", "unseen20", "--extra-data", "a", "b",
        "--doodles", "q", "--doodles-per-class", "7",
    )  # fmt: skip
    assert config.hold_out == "unseen20" and config.extra_data == ("a", "b")
    assert config.doodles == "q" and config.doodles_per_class == 7
    named = config_of("--data", str(tmp_path), "--hold-out", "swan", "duck")
    assert named.hold_out == ("swan", "duck") and named.extra_data == () and named.doodles is None


def test_hidden_class_and_bad_numbers_are_refused(shared_data, tmp_path, capsys):
    sketchy = str(shared_data / "sketchy")
    out = str(tmp_path / "m.safetensors")
    assert main(["train", "--method", "baseline", "--data", sketchy, "--classes", "cow", "dog",
                 "--out", out]) == 2  # fmt: skip
    assert "hidden zero-shot test class" in capsys.readouterr().err
    assert main(["train", "--method", "baseline", "--data", sketchy, "--doodles-per-class", "0",
                 "--out", out]) == 2  # fmt: skip
    assert "doodles_per_class" in capsys.readouterr().err
    assert main(["train", "--method", "baseline", "--data", sketchy, "--hold-out", "swam",
                 "--out", out]) == 2  # fmt: skip
    assert "in none of the training data" in capsys.readouterr().err


def test_help_names_the_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--hold-out", "--extra-data", "--doodles", "--doodles-per-class"):
        assert flag in text
