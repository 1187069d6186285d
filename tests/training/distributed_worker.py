"""One rank of the two-process training tests (tests/training/test_distributed.py).

Run under torchrun, which sets RANK, WORLD_SIZE, MASTER_ADDR, ...::

    torchrun --standalone --nproc_per_node 2 -m tests.training.distributed_worker OUT [JOB ...]

Every rank joins the process group from that environment (``join_from_environment``) and runs
the jobs (all of them by default) on the real shared data, each writing under ``OUT/<job>/``:
- ``<method>`` (each of ``RUNS``): trains the method's tiny configuration through
  ``training.train``; rank 0 writes the trainer's files (``model.safetensors``, its resume state
  and log); every rank writes ``rank<r>.json``: its ``TrainResult`` (steps, the model id, a hash
  of every weight and buffer it holds, and the digest of its procedure state).
- ``cancel``: ``baseline`` again, rank 1 alone asking to stop after its first step (``cut``),
  then resumed as two processes to the end (``resumed``).
- ``from-single``: resumes ``OUT/from-single/single.safetensors`` (one epoch of ``baseline``
  that the test trained in one process before starting the workers) for a second epoch.
- ``passes``: the passes over the training set that a method splits between the processes (DSH's
  network outputs, GDH's starting features, anchor's photo targets), run once split and once
  whole by each process; rank 0 writes the largest difference (``passes.json``).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import torch

from tests.shared_data import SHARED_DATA
from training import TrainConfig, train
from training.progress import drain

SKETCHY = ("airplane", "apple", "banana", "chair")
SHOE_IDS = tuple(str(i) for i in range(1, 13))
TINY_GDH = {
    "image_size": 64,
    "pretrained": False,
    "gen_channels": 4,
    "gi_blocks": 1,
    "gs_blocks": 1,
}

# method -> (data folder under the shared data, config): 2 epochs of a few steps each, tiny
# images, a few classes; each exercises its method's cross-rank step (docstring of the test)
RUNS: dict[str, tuple[str, TrainConfig]] = {
    "baseline": (
        "sketchy",
        TrainConfig(
            model={"bits": 32, "image_size": 96, "pretrained": False},
            classes=SKETCHY,
            epochs=2,
            batch_size=8,
            per_class=2,
            max_steps_per_epoch=3,
            lr=1e-3,
            seed=3,
        ),
    ),
    "dssa": (
        "shoes_v1",
        TrainConfig(
            method="dssa",
            model={"bits": 32, "image_size": 96},
            options={"edges": "released"},
            classes=SHOE_IDS,
            hard_negatives=True,
            epochs=2,
            batch_size=4,
            lr=1e-3,
            seed=3,
        ),
    ),
    "semi3": (
        "sketchy",
        TrainConfig(
            method="semi3",
            model={"bits": 32, "image_size": 64, "pretrained": False, "embed_dim": 32},
            classes=SKETCHY,
            epochs=2,
            batch_size=8,
            per_class=2,
            max_steps_per_epoch=2,
            lr=1e-3,
            seed=3,
        ),
    ),
    "dsh": (
        "sketchy",
        TrainConfig(
            method="dsh",
            model={"image_size": 64, "bits": 32, "pretrained": False, "fc1": 32, "fc2": 16},
            options={"init_codes": "network"},
            classes=SKETCHY,
            epochs=2,
            batch_size=8,
            per_class=2,
            max_steps_per_epoch=2,
            lr=1e-3,
            seed=3,
        ),
    ),
    "gdh": (
        "sketchy",
        TrainConfig(
            method="gdh",
            model={"bits": 32, **TINY_GDH},
            options={"disc_channels": 8},
            classes=SKETCHY,
            epochs=2,
            batch_size=8,
            per_class=2,
            max_steps_per_epoch=2,
            lr=1e-3,
            schedule="constant",
            seed=3,
        ),
    ),
    "anchor": (
        "sketchy",
        TrainConfig(
            method="anchor",
            model={"bits": 32, "image_size": 96, "photo_size": 96},
            classes=SKETCHY,
            epochs=2,
            batch_size=8,
            max_steps_per_epoch=2,
            freeze_blocks=5,
            lr=1e-3,
            seed=3,
        ),
    ),
}


BATCHES_PER_EPOCH = {"baseline": 3, "dssa": 3, "semi3": 2, "dsh": 2, "gdh": 2, "anchor": 2}
"""How many batches one epoch of each configuration has (all processes together)."""


def write_result(path: Path, result) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ("global_step", "epochs_done", "cancelled", "model_id", "state_digest")
    path.write_text(json.dumps({k: getattr(result, k) for k in fields}))


def run(method: str, out: Path, dist) -> None:
    folder, config = RUNS[method]
    result = drain(train(config, SHARED_DATA / folder, out / "model.safetensors", distributed=dist))
    write_result(out / f"rank{dist.rank}.json", result)


def cancel(out: Path, dist) -> None:
    """Rank 1 alone is cancelled after its first step; then the cut run is resumed."""
    folder, config = RUNS["baseline"]
    stop = threading.Event()

    def after_first_step(event) -> None:
        if dist.rank == 1 and event.phase == "step" and event.global_step == 1:
            stop.set()

    cut = out / "cut.safetensors"
    events = train(config, SHARED_DATA / folder, cut, cancel=stop, distributed=dist)
    write_result(out / f"cut-rank{dist.rank}.json", drain(events, after_first_step))
    events = train(
        config, SHARED_DATA / folder, out / "resumed.safetensors", resume=cut, distributed=dist
    )
    write_result(out / f"resumed-rank{dist.rank}.json", drain(events))


def from_single(out: Path, dist) -> None:
    folder, config = RUNS["baseline"]
    events = train(
        config,
        SHARED_DATA / folder,
        out / "resumed.safetensors",
        resume=out / "single.safetensors",
        distributed=dist,
    )
    write_result(out / f"rank{dist.rank}.json", drain(events))


def passes(out: Path, dist) -> None:
    """Each split pass against the same pass run whole, on one trained model per method."""
    from engine.models import create
    from training.arrays import prepare_arrays
    from training.distributed import SINGLE
    from training.methods import get_procedure
    from training.sources import training_dataset

    def procedure(method: str, where):
        folder, config = RUNS[method]
        torch.manual_seed(config.seed)
        model = create(method, **config.model)
        dataset = training_dataset(config, SHARED_DATA / folder)
        data = drain(prepare_arrays(dataset, model.photo_size, model.sketch_size))
        proc = get_procedure(method)(model, data, config, torch.device("cpu"))
        proc.dist = where
        return proc

    def tables(method: str, where) -> list[torch.Tensor]:
        proc = procedure(method, where)
        if method == "dsh":  # the cached trunk features, class embedding, network outputs
            drain(proc.prepare(threading.Event()))
            cache = [proc.cache[k] for k in ("photo", "token", "sketch")]
            return [*cache, proc.embedding, proc.projection, *proc.network_outputs()]
        if method == "gdh":
            proc.on_epoch_start(0)  # init_codes "features": a pass over the training set
            return [proc.feat_p, proc.feat_s, proc.b_p, proc.b_s, proc.d]
        drain(proc.prepare(threading.Event()))  # anchor: the photo targets
        return [proc.targets, proc.prototypes, proc.photo_mean]

    report = {}
    for method in ("dsh", "gdh", "anchor"):
        split, whole = tables(method, dist), tables(method, SINGLE)
        report[method] = {
            "shapes": [list(t.shape) for t in split],
            "whole_shapes": [list(t.shape) for t in whole],
            "max_difference": max(
                float((a - b).abs().max()) for a, b in zip(split, whole, strict=True)
            ),
        }
    if dist.is_main:
        (out / "passes.json").write_text(json.dumps(report))


JOBS = {"cancel": cancel, "from-single": from_single, "passes": passes}


def main(argv: list[str]) -> int:
    from training.distributed import join_from_environment

    torch.set_num_threads(1)
    out = Path(argv[0])
    jobs = argv[1:] or [*RUNS, *JOBS]
    dist = join_from_environment("cpu")
    try:
        for job in jobs:
            (out / job).mkdir(parents=True, exist_ok=True)
            if job in RUNS:
                run(job, out / job, dist)
            else:
                JOBS[job](out / job, dist)
    finally:
        dist.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
