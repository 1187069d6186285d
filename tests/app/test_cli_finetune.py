"""``sketch-search train --init-from``: a real saved checkpoint fine-tuned end to end through the
command line (its architecture kept, recorded in the log and the new checkpoint), a conflicting
``--bits`` and ``--resume`` with ``--init-from`` refused with one clear line."""

import json

import pytest
import torch

from app.cli import EXIT_ERROR, main
from engine.models import create, load_checkpoint, model_id, read_checkpoint_info, save_checkpoint
from training import run_files

ARCH = {"bits": 32, "image_size": 96, "pretrained": False, "hidden": 16}


@pytest.fixture
def start_ckpt(tmp_path):
    torch.manual_seed(3)
    return save_checkpoint(create("baseline", **ARCH), tmp_path / "start.safetensors")


def tiny_run(shared_data, start, out) -> list[str]:
    return [
        "train",
        "--method",
        "baseline",
        "--data",
        str(shared_data / "sketchy"),
        "--init-from",
        str(start),
        "--classes",
        "airplane",
        "apple",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "1",
        "--batch-size",
        "4",
        "--per-class",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
    ]


def test_init_from_fine_tunes_a_checkpoint_end_to_end(shared_data, start_ckpt, tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "tuned.safetensors"
    assert main([*tiny_run(shared_data, start_ckpt, out), "--no-eval"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoint"] == str(out) and summary["steps"] == 1
    tuned = load_checkpoint(out)
    assert tuned.config.to_dict() == load_checkpoint(start_ckpt).config.to_dict()
    first = json.loads(run_files(out)[2].read_text().splitlines()[0])
    start_id = model_id(load_checkpoint(start_ckpt))
    assert first["init_from"] == {"path": str(start_ckpt.resolve()), "model_id": start_id}
    training = read_checkpoint_info(out).metadata["training"]
    assert training["config"]["init_from"] == str(start_ckpt.resolve())


def test_conflicts_are_refused_in_one_line(shared_data, start_ckpt, tmp_path, capsys):
    out = tmp_path / "tuned.safetensors"
    assert main([*tiny_run(shared_data, start_ckpt, out), "--bits", "64"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "Fine-tuning keeps the architecture" in err and "bits 64" in err
    code = main([*tiny_run(shared_data, start_ckpt, out), "--resume", str(start_ckpt)])
    assert code == EXIT_ERROR
    assert "Pass only one of them" in capsys.readouterr().err
    assert not out.exists()


def test_help_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--init-from CKPT" in capsys.readouterr().out
