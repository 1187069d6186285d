"""``sketch-search fit-codes``: fit the binarisation of an existing checkpoint post hoc.

Writes a new checkpoint (``--out``, default ``<source>-fitted.safetensors`` beside the source;
the source is untouched) whose codes are fitted (``codes="fitted"``: per-domain means and a
PCA + ITQ projection, ``engine.models.fitted``) on the raw outputs of the data set's training
split, zero-shot test classes left out (``training.fit_codes``). The model id changes with the
codes, so a library indexed with the source is indexed again for the fitted copy. Its figures
are not carried over (they measured the sign codes): run ``evaluate --store`` on the copy.
``--from-features`` (DSSA) fits the codes on the model's D-d features instead of its hash
layer's K outputs (``DSSAConfig.codes_from``); ``--hog-weight W`` (DSSA) adds the drawings' HOG
distance to its re-ranking distance, fitted on the same data (``training.fit_codes.fit_hog_term``).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from app.progress import ProgressLine, bar_updater


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit-codes", help="fit a checkpoint's codes (means, PCA + ITQ) on a data set's train split"
    )
    p.add_argument("checkpoint", type=Path, metavar="CKPT", help="checkpoint to fit")
    p.add_argument("--data", required=True, type=Path, help="data set folder")
    p.add_argument(
        "--split",
        default="train",
        choices=("train",),
        help="split of split.json to fit on (training data only; a folder without split.json "
        "is used whole)",
    )
    p.add_argument(
        "--fit-on",
        choices=("both", "photos", "sketches"),
        default=None,
        help="fit PCA and the ITQ rotation on the photos' centred outputs or on both domains' "
        "('sketches': PCA on the sketches, ITQ on both; default: the checkpoint's code_fit, "
        "'photos' unless set)",
    )
    p.add_argument(
        "--from-features",
        action="store_true",
        help="DSSA: make the codes from the fine-grained features (PCA + ITQ to K bits) instead "
        "of the hash layer's outputs",
    )
    p.add_argument(
        "--hog-weight",
        type=float,
        default=None,
        metavar="W",
        help="DSSA: re-rank by the learnt distance plus W x the drawings' HOG distance, each "
        "scaled by its spread on the training pairs (0: the learnt distance alone; default: "
        "the checkpoint's)",
    )
    p.add_argument("--out", type=Path, help="the fitted checkpoint (default: CKPT-fitted)")
    p.add_argument("--name", help="the fitted model's name (default: the source's, -fitted)")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.models import read_checkpoint_info
    from training.fit_codes import fit_checkpoint
    from training.progress import drain

    src: Path = args.checkpoint
    out = args.out or src.with_name(f"{src.stem}-fitted{src.suffix}")
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    bar = ProgressLine()
    try:
        job = fit_checkpoint(
            src,
            args.data,
            out,
            split=args.split,
            code_fit=args.fit_on,
            from_features=args.from_features,
            hog_weight=args.hog_weight,
            name=args.name,
            device=args.device,
            cancel=cancel,
        )
        path = drain(job, bar_updater(bar, args.json))
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    info = read_checkpoint_info(path)
    note = info.metadata["codes_fit"]
    if args.json:
        print(json.dumps({"path": str(path), "model_id": info.metadata["model_id"], **note}))
    else:
        print(
            f"Wrote {path} ({info.name}, {info.metadata['model_id']}): codes fitted on "
            f"{note['sketches']} sketches and {note['photos']} photos of {note['data']} "
            f"(split: {note['split']}; ITQ on {note['rotation_fitted_on']}, "
            f"loss {note['itq_loss'][0]} -> {note['itq_loss'][1]})."
        )
    return 0
