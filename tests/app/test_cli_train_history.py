"""``sketch-search train`` records its runs in the app's run history: without ``--out`` in a new
run folder there, with ``--out`` at the path asked for (the record points to it)."""

import json

import torch

from app.cli import main
from training.runs import delete_run, list_runs


def tiny_run(shared_data, *extra: str) -> list[str]:
    return [
        "train", "--method", "baseline", "--data", str(shared_data / "sketchy"),
        "--classes", "airplane", "apple", "--bits", "32", "--image-size", "96",
        "--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "4", "--per-class", "2",
        "--device", "cpu", "--json", *extra,
    ]  # fmt: skip


def test_a_cli_run_appears_in_the_run_history(shared_data, capsys):
    torch.set_num_threads(1)
    assert main(tiny_run(shared_data)) == 0
    summary = json.loads(capsys.readouterr().out)
    (record,) = list_runs()
    assert summary["run"] == str(record.folder) and record.out is None
    assert summary["checkpoint"] == str(record.checkpoint) and record.checkpoint.is_file()
    assert record.status == "done" and record.report == summary["evaluation"]
    assert summary["evaluation"]["baseline"]  # the app's protocol, HOG baseline included
    assert [v["epoch"] for v in record.validation] == [1]


def test_out_keeps_the_checkpoint_where_asked_and_records_it(shared_data, tmp_path, capsys):
    out = tmp_path / "mine.safetensors"
    args = tiny_run(shared_data, "--out", str(out), "--no-eval", "--no-validate")
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(out)
    (record,) = list_runs()
    assert record.checkpoint == out and record.status == "done" and not record.validation
    assert main(args) == 0  # the same --out again: the same record, not a second one
    (again,) = list_runs()
    assert again.folder == record.folder
    delete_run(again)
    assert not out.exists() and not list_runs()
