"""``torchrun --nproc_per_node 2 -m app.cli train ...`` (issue 20): the documented entry, end to
end on real data: two gloo processes train, rank 0 alone writes, evaluates through the engine's
index and prints; the other process prints nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.models import load_checkpoint, model_id, read_checkpoint_info
from training import run_files

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_torchrun_cli_trains_on_two_processes_and_rank0_evaluates_once(sketchy, tmp_path):
    out = tmp_path / "m.safetensors"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "app.cli", "train", "--method", "baseline"]
    command += ["--data", str(sketchy), "--classes", "airplane", "apple", "banana"]
    command += ["--bits", "32", "--image-size", "96", "--epochs", "1", "--batch-size", "8"]
    command += ["--per-class", "2", "--max-steps-per-epoch", "3", "--seed", "0"]
    command += ["--out", str(out), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout)  # one JSON document: rank 1 printed nothing
    assert summary["steps"] == 2  # 3 batches shared by 2 processes: 2 steps each
    assert summary["model_id"] == model_id(load_checkpoint(out))
    evaluation = summary["evaluation"]
    assert evaluation["protocol"]["model_id"] == summary["model_id"]
    assert evaluation["protocol"]["queries"] > 0 and 0 < evaluation["metrics"]["map_all"] <= 1
    stored = read_checkpoint_info(out).metadata["metrics"]
    assert stored["metrics"] == evaluation["metrics"]  # evaluated and stored once, by rank 0
    events = [json.loads(line) for line in run_files(out)[2].read_text().splitlines()]
    assert [e["event"] for e in events].count("step") == 2
    assert events[0]["processes"] == 2 and events[-1]["event"] == "done"
