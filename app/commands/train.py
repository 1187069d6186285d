"""``sketch-search train``: train a method on a data set folder, with a progress bar.

Flags override a JSON config file (``--config``, the fields of ``training.TrainConfig``). Ctrl+C
asks the trainer to stop between steps; it saves a checkpoint and resume state at that step, and
``--resume CKPT`` continues from there. The run is ``training.run.run_training``, the same as
the app's: a quick validation after epochs (``training.run.validation_due``; unless
``--no-validate``), then the checkpoint is evaluated on the data set's test split with the app's
protocol (real-valued figures and the HOG baseline included; unless ``--no-eval``) and the
figures are stored in its metadata. Every run
is recorded in the app's run history (``training.runs``): its checkpoint lies in a new run
folder there, or at ``--out PATH`` when given (the history's record then points to it).

``--init-from CKPT`` fine-tunes a checkpoint (a shipped one such as
``assets/models/semi3-64.safetensors``, or one's own): the run starts from its weights and
architecture with a fresh optimiser, and this run's epochs, learning rate and data
(``training.finetune``). ``--bits``, ``--backbone`` and ``--image-size`` may only repeat the
checkpoint's values. ``--resume`` together with ``--init-from`` is refused rather than one of
them silently ignored: a resumed run continues from its own saved state (a fine-tuning run
included, which records its starting checkpoint), so the two ask for different things.

Training data beyond ``--data`` (``training.sources``): ``--hold-out unseen20`` (or class names)
leaves classes out of every source, for ``evaluate --protocol unseen20``; ``--extra-data DIR..``
merges more category-level folders (PACS) by class name; ``--doodles DIR`` adds the QuickDraw
drawings of the training classes (``--doodles-per-class N`` of each). The 21 hidden zero-shot
test classes are left out of every source whatever the flags say.

Several processes (GPUs or machines): run the same command under torchrun, e.g.
``torchrun --standalone --nproc_per_node 4 -m app.cli train ...``. Each process joins the
process group from torchrun's environment (``training.distributed``); rank 0 alone draws the
progress bar, writes the checkpoint, log and resume state, evaluates and prints the result; the
others print nothing and exit 0 (130 when cancelled). Ctrl+C, or the SIGTERM with which torchrun
stops its workers, asks every process to stop at the same step, with a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from app.progress import ProgressLine, bar_updater


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a retrieval method on a data set folder")
    p.add_argument("--method", required=True, help="method name (see `sketch-search models`)")
    p.add_argument("--data", required=True, type=Path, help="data set folder")
    p.add_argument("--config", type=Path, help="JSON file of training options (flags win)")
    p.add_argument("--backbone", choices=["paper", "efficientnet_lite0"])
    p.add_argument("--bits", type=int, help="code length (16, 32, 64, 128, 256)")
    p.add_argument("--image-size", type=int, help="model input size, if the method has one")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--per-class", type=int, help="category level: samples per class in a batch")
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=["constant", "step", "cosine"])
    p.add_argument("--freeze-blocks", type=int, help="pretrained backbone stages kept frozen")
    p.add_argument("--max-steps-per-epoch", type=int)
    p.add_argument("--classes", nargs="+", help="category level: train on these classes only")
    p.add_argument("--split", default=None, help="split to train on (default: train; 'all')")
    p.add_argument(
        "--hold-out",
        nargs="+",
        metavar="CLASS",
        help="leave these classes out of every source: class names or the named set unseen20 "
        "(measure them with `evaluate --protocol unseen20`)",
    )
    p.add_argument(
        "--extra-data",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="more category-level folders (photos/<class>/, sketches/<class>/) merged by class "
        "name; items naming the main data's test photos are left out",
    )
    p.add_argument(
        "--doodles",
        type=Path,
        metavar="DIR",
        help="a QuickDraw folder (<word>.ndjson.gz): its drawings of the training classes are "
        "added as sketches",
    )
    p.add_argument("--doodles-per-class", type=int, metavar="N", help="at most N doodles a class")
    p.add_argument(
        "--doodle-classes",
        choices=("data", "imagenet"),
        help="doodles of the data's classes only (default), or also of the ImageNet classes the "
        "data lacks (methods that train on classes without photos: anchor)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.add_argument(
        "--out",
        type=Path,
        help="checkpoint to write (default: a new run folder in the app's run history)",
    )
    p.add_argument("--resume", type=Path, help="checkpoint of an interrupted run to continue")
    p.add_argument(
        "--init-from",
        type=Path,
        metavar="CKPT",
        help="checkpoint to fine-tune: its weights and architecture, a fresh optimiser "
        "(--bits/--backbone/--image-size may only repeat its values)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    p.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the quick validation after epochs (each of a run of up to 10, else 10 spaced "
        "ones and the last; figures kept in the run history)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace):
    from engine.errors import ConfigError
    from training import TrainConfig
    from training.data import NAMED_CLASS_SETS, data_layout
    from training.methods import method_model_defaults, method_train_defaults

    values: dict = {}
    if args.config is not None:
        try:
            values = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"Cannot read the config file {args.config}: {exc}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{args.config} must hold a JSON object of training options.")
    values["method"] = args.method
    # the method's own recipe (what the Train panel pre-fills) under the file's and the flags'
    layout = data_layout(args.data)
    for key, value in method_train_defaults(args.method, layout).items():
        values.setdefault(key, value)
    model = dict(values.get("model", {}))
    if args.init_from is None and args.resume is None:  # a new model: the recipe's options
        for key, value in method_model_defaults(args.method, layout).items():
            model.setdefault(key, value)
    for flag, key in (("backbone", "backbone"), ("bits", "bits"), ("image_size", "image_size")):
        if getattr(args, flag) is not None:
            model[key] = getattr(args, flag)
    values["model"] = model
    for flag in (
        "epochs",
        "batch_size",
        "per_class",
        "lr",
        "schedule",
        "freeze_blocks",
        "max_steps_per_epoch",
        "seed",
        "device",
    ):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    if args.classes:
        values["classes"] = tuple(args.classes)
    if args.hold_out:
        named = len(args.hold_out) == 1 and args.hold_out[0] in NAMED_CLASS_SETS
        values["hold_out"] = args.hold_out[0] if named else tuple(args.hold_out)
    if args.extra_data:
        values["extra_data"] = tuple(str(p) for p in args.extra_data)
    if args.doodles is not None:
        values["doodles"] = str(args.doodles)
    if args.doodles_per_class is not None:
        values["doodles_per_class"] = args.doodles_per_class
    if args.doodle_classes is not None:
        values["doodle_classes"] = args.doodle_classes
    if args.split is not None:
        values["split"] = None if args.split == "all" else args.split
    if args.init_from is not None:
        if args.resume is not None:
            raise ConfigError(
                "--resume continues an interrupted run from its saved state (a fine-tuning run "
                "keeps its own starting point); --init-from starts a new run from a checkpoint. "
                "Pass only one of them."
            )
        values["init_from"] = str(args.init_from)
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    from training.distributed import join_from_environment
    from training.progress import drain
    from training.run import RunPlan, run_training

    config = build_config(args)
    dist = join_from_environment(config.device)  # one process unless run under torchrun
    record = run_record(args, config) if dist.is_main else None  # rank 0 keeps the record
    out = Path(dist.broadcast_object(str(record.checkpoint) if record else None))
    plan = RunPlan(
        config,
        args.data,
        out,
        resume=args.resume,
        validate_each_epoch=not args.no_validate,
        preview_each_epoch=False,  # nothing here to show a preview on
        evaluate_at_end=not args.no_eval,
    )
    cancel = threading.Event()
    stops = (signal.SIGINT, signal.SIGTERM) if dist.active else (signal.SIGINT,)
    previous = {sig: signal.signal(sig, lambda *_: cancel.set()) for sig in stops}
    bar = ProgressLine()
    try:
        events = run_training(plan, cancel, record=record, distributed=dist)
        outcome = drain(events, bar_updater(bar, args.json or not dist.is_main))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
        dist.close()
    result = outcome.result
    if not dist.is_main:
        return 130 if result.cancelled else 0
    summary = {
        "checkpoint": str(result.checkpoint),
        "model_id": result.model_id,
        "epochs_done": result.epochs_done,
        "steps": result.global_step,
        "cancelled": result.cancelled,
        "losses": result.losses,
        "log": str(result.log),
        "run": str(record.folder),
    }
    if result.cancelled:
        if not args.json:
            print(
                f"Stopped at step {result.global_step}; checkpoint {result.checkpoint}. "
                f"Continue with: sketch-search train --method {config.method} "
                f"--data {args.data} --resume {result.checkpoint}",
                file=sys.stderr,
            )
        print(json.dumps(summary, indent=1) if args.json else "Cancelled.")
        return 130
    if outcome.report is not None:
        summary["evaluation"] = outcome.report
    elif not args.no_eval:  # the evaluation was cancelled
        print(json.dumps(summary, indent=1) if args.json else "Cancelled.")
        return 130
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"Saved {result.checkpoint} ({result.model_id}) after {result.global_step} steps.")
        if "evaluation" in summary:
            from app.commands.evaluate import format_report

            print(format_report(summary["evaluation"]))
    return 0


def run_record(args: argparse.Namespace, config):
    """The run's record in the app's run history (``training.runs``): the one that wrote the
    checkpoint being resumed or written again, else a new one (with ``--out`` or ``--resume``,
    pointing at that checkpoint; otherwise its checkpoint lies in the run's folder)."""
    from training.runs import find_run, new_run

    target = args.resume or args.out
    record = find_run(target) if target is not None else None
    if record is None:
        return new_run(config.method, args.data, config.to_dict(), not args.no_validate, target)
    if args.resume is None:  # a new run over the checkpoint of an old one
        record.data_dir, record.config = str(args.data), config.to_dict()
        record.report, record.validation = None, []
    record.validate = not args.no_validate
    return record
