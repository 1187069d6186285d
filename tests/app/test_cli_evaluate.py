"""`sketch-search evaluate` on real Sketchy classes: the figures it prints, and with --store the
same figures written into the checkpoint, whose weights and name stay as they were."""

import json

from app.cli import main
from engine.models import read_checkpoint_info
from engine.store import default_checkpoint


def test_evaluate_prints_and_stores_the_figures(shared_data, tmp_path, capsys):
    ckpt = tmp_path / "shipped-copy.safetensors"
    ckpt.write_bytes(default_checkpoint().read_bytes())
    before = read_checkpoint_info(ckpt)
    args = ["evaluate", "--model", str(ckpt), "--data", str(shared_data / "sketchy")]
    args += ["--classes", "airplane", "apple", "--no-baseline", "--json"]

    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert read_checkpoint_info(ckpt).metrics == before.metrics  # not stored without --store
    assert printed["protocol"]["queries"] > 0
    assert 0.0 <= printed["metrics"]["map_all"] <= 1.0

    assert main([*args, "--store"]) == 0
    stored_run = json.loads(capsys.readouterr().out)
    after = read_checkpoint_info(ckpt)
    assert after.metrics == stored_run["metrics"] == printed["metrics"]
    assert after.metrics != before.metrics  # two classes, not the shipped test-split figures
    assert after.metadata["model_id"] == before.metadata["model_id"]
    assert after.name == before.name
