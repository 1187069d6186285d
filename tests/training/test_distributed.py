"""Training under torchrun (issue 20): two gloo processes on the CPU, on real data, every method.

One torchrun launch of two workers (``tests/training/distributed_worker.py``) runs every case:
each method's tiny configuration trained as two processes (2 epochs of a few steps, 64-96 px, 4
Sketchy classes or 12 QMUL shoes), a cancel seen by one process only, resumes across process
counts, and the passes over the training set that the methods split between processes. Each
worker reports, per run, its step count, its model id (a SHA-256 of every weight and buffer it
holds) and the digest of its procedure state (DSH/GDH codes, classifiers, discriminators,
mined negatives); the tests compare those across the processes and with the files rank 0 wrote.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.errors import CheckpointError
from engine.models import create, load_checkpoint, model_id
from tests.shared_data import SHARED_DATA, missing_reason
from tests.training.distributed_worker import BATCHES_PER_EPOCH, RUNS
from training import run_files, train
from training.config import lr_factor
from training.distributed import SINGLE, Distributed
from training.progress import drain
from training.state import load_state, state_digest

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 2


def ranks(folder: Path, name: str = "rank") -> list[dict]:
    return [json.loads((folder / f"{name}{r}.json").read_text()) for r in range(PROCESSES)]


def log_events(checkpoint: Path) -> list[dict]:
    return [json.loads(line) for line in run_files(checkpoint)[2].read_text().splitlines()]


# ---------------------------------------------------------------------- without processes
def test_shards_take_turns_and_pad_by_wrapping_around():
    batches = list(range(5))
    two = [Distributed(r, 2).shard(batches) for r in range(2)]
    assert two == [[0, 2, 4], [1, 3, 0]]  # as many steps each; the 6th slot wraps to batch 0
    three = [Distributed(r, 3).shard(list(range(7))) for r in range(3)]
    assert three == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]
    # after k steps of every process, the first k * N batches of the epoch are done
    assert sorted(b for shard in three for b in shard[:2]) == list(range(6))
    assert SINGLE.shard(batches) == batches and SINGLE.chunk(7) == range(7)
    chunks = [Distributed(r, 3).chunk(10) for r in range(3)]
    assert [list(c) for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


def test_single_process_collectives_are_the_identity():
    rows = torch.arange(6.0).reshape(3, 2)
    assert SINGLE.gather_rows(rows) is rows
    [(index, values)] = SINGLE.gather_indexed(torch.tensor([2, 0, 1]), rows)
    assert values is rows and index.tolist() == [2, 0, 1]
    assert SINGLE.broadcast_object({"a": 1}) == {"a": 1} and SINGLE.any(False) is False
    assert SINGLE.gradient_sync({"m": torch.nn.Linear(2, 2)}, torch.device("cpu")) is None


# ---------------------------------------------------------------------- two processes
@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """Every case of the worker, run once by two gloo processes; their output folder."""
    for folder in ("sketchy", "shoes_v1"):
        if not (SHARED_DATA / folder / "split.json").is_file():
            pytest.skip(missing_reason(SHARED_DATA / folder))
    out = tmp_path_factory.mktemp("distributed")
    # one epoch of baseline in one process, for the workers to resume as two
    folder, config = RUNS["baseline"]
    drain(
        train(
            config.replace(epochs=1),
            SHARED_DATA / folder,
            out / "from-single" / "single.safetensors",
        )
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(PROCESSES), "-m", "tests.training.distributed_worker"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode:
        pytest.fail(f"the workers failed ({done.returncode}):\n{done.stderr[-6000:]}")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", list(RUNS))
def test_two_processes_end_with_identical_state_and_rank0_saved_it(two_processes, method):
    folder = two_processes / method
    first, second = ranks(folder)
    # identical: every weight and buffer (model id), codes, classifiers, discriminators
    assert first == second
    assert not first["cancelled"] and first["epochs_done"] == 2
    # each process took its share: ceil(batches / processes) steps an epoch
    assert first["global_step"] == 2 * math.ceil(BATCHES_PER_EPOCH[method] / PROCESSES)

    checkpoint = folder / "model.safetensors"
    assert model_id(load_checkpoint(checkpoint)) == first["model_id"]
    saved = load_state(run_files(checkpoint)[1])
    assert state_digest(saved["procedure"]) == first["state_digest"]
    assert saved["processes"] == PROCESSES and saved["global_step"] == first["global_step"]

    _, config = RUNS[method]
    torch.manual_seed(config.seed)
    assert model_id(create(method, **config.model)) != first["model_id"]  # it trained

    # rank 0 alone wrote the log: every step once, not once per process
    events = [e["event"] for e in log_events(checkpoint)]
    assert events.count("config") == 1 and events.count("done") == 1
    assert events.count("step") == first["global_step"] and events.count("epoch") == 2
    assert log_events(checkpoint)[0]["processes"] == PROCESSES


@pytest.mark.slow
def test_split_passes_over_the_training_set_equal_one_process_pass(two_processes):
    """DSH's network outputs, GDH's starting features and codes, anchor's photo targets: each
    process computes its rows, all are gathered; the same pass run whole matches."""
    report = json.loads((two_processes / "passes" / "passes.json").read_text())
    assert set(report) == {"dsh", "gdh", "anchor"}
    for method, figures in report.items():
        assert figures["shapes"] == figures["whole_shapes"], method
        # batch boundaries differ between the split and the whole pass: float rounding only
        assert figures["max_difference"] < 1e-5, (method, figures)


@pytest.mark.slow
def test_a_cancel_on_one_process_stops_both_and_resume_continues_bit_for_bit(two_processes):
    folder = two_processes / "cancel"
    cut = ranks(folder, "cut-rank")
    assert cut[0] == cut[1] and cut[0]["cancelled"] and cut[0]["global_step"] == 1
    assert [e["event"] for e in log_events(folder / "cut.safetensors")].count("cancelled") == 1
    resumed = ranks(folder, "resumed-rank")
    assert resumed[0] == resumed[1]
    straight = ranks(two_processes / "baseline")[0]
    assert resumed[0]["model_id"] == straight["model_id"]  # as if never interrupted

    # a state saved mid-epoch by two processes is not resumed by one
    folder_name, config = RUNS["baseline"]
    with pytest.raises(CheckpointError, match="by 2 training process"):
        drain(
            train(
                config,
                SHARED_DATA / folder_name,
                two_processes / "one.safetensors",
                resume=folder / "cut.safetensors",
            )
        )


def _lr_follows_schedule(checkpoint: Path, config, steps_per_epoch: int, after: int) -> None:
    """Each step event's lr (set for the next step) is the schedule's at that global step."""
    steps = [e for e in log_events(checkpoint) if e["event"] == "step" and e["global_step"] > after]
    assert steps
    for e in steps:
        expected = config.lr * lr_factor(config, e["global_step"], steps_per_epoch)
        assert e["lr"] == pytest.approx(expected, rel=1e-9), e


@pytest.mark.slow
def test_resume_across_process_counts(two_processes, tmp_path):
    folder_name, config = RUNS["baseline"]
    one_process_steps = BATCHES_PER_EPOCH["baseline"]
    two_process_steps = math.ceil(one_process_steps / PROCESSES)

    # one process -> two: the epoch the single run saved is counted in two-process steps
    folder = two_processes / "from-single"
    first, second = ranks(folder)
    assert first == second and first["global_step"] == 2 * two_process_steps
    resumed = folder / "resumed.safetensors"
    assert log_events(resumed)[0]["event"] == "resume"
    _lr_follows_schedule(resumed, config, two_process_steps, after=two_process_steps)

    # two processes -> one: a third epoch on the distributed run's checkpoint
    three = config.replace(epochs=3)
    out = tmp_path / "three.safetensors"
    distributed = two_processes / "baseline" / "model.safetensors"
    result = drain(train(three, SHARED_DATA / folder_name, out, resume=distributed))
    assert result.global_step == 3 * one_process_steps and not result.cancelled
    start = log_events(out)[0]
    assert start["event"] == "resume" and start["start"] == [2, 0] and start["processes"] == 1
    _lr_follows_schedule(out, three, one_process_steps, after=2 * one_process_steps)
