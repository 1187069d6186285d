"""The shipped models' recipes, and one call that trains, measures and stores all of them.

``python -m training.shipped --data ../shared/data --out runs/shipped [--device cuda]`` runs,
in order, every step that made the checkpoints in ``assets/models`` (DEVELOPERS.md gives the
figures): for a recipe validated on the class-disjoint protocol, first the same recipe without
the unseen20 classes and its zero-shot figures, then the shipped model, its float16 copy, its
stored figures (Sketchy test split and doodles, or its fine-grained test) and the validation
figures stored beside them. The new checkpoints go to ``OUT/models`` under the shipped names;
nothing in ``assets/models`` is touched (copy them there after looking at ``OUT/figures.json``).

Each step is the ``sketch-search`` command a person would type (run through ``app.cli`` in a
child process, so a step that fails stops the run with its own message), so this module is
also where the shipped recipes are written down in full. The CPU recipe is the default; on a
GPU (``--device cuda``) the same commands run with the same batch sizes and step counts, which
keeps the figures comparable. ``--only NAME ...`` runs some models (a model's validation run and
the models it starts from are run with it: ``dsh-64`` needs the default's sketch encoder).
``--smoke`` runs every step with one epoch of two steps, the category-level ones on three
classes, to check a machine and the plan before the real run (its figures mean nothing).

``figures.json`` holds, per step, its wall time, and per evaluation its headline figures
(Hamming, asymmetric and as the app searches, random); ``steps.log`` each command's output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data import FINE_GRAINED
from training.evaluate import store_figures
from training.methods import method_model_defaults

SMOKE_CLASSES = ("airplane", "apple", "bicycle")  # Sketchy classes outside unseen20 and the 21
VALIDATION_KEYS = {  # stored protocol name -> the validation evaluation's file stem
    "unseen20_recipe_validation": "u20",
    "unseen20_doodles_recipe_validation": "u20d",
}


@dataclass(frozen=True)
class Recipe:
    """One shipped model: its training command's arguments and options file, the data set it
    trains on, what follows training, and which checkpoints it starts from."""

    name: str
    method: str
    data: str  # folder under the shared data
    args: tuple[str, ...]  # the training command's arguments besides method, data, config, out
    config: dict[str, Any] = field(default_factory=dict)  # the --config file's contents
    validate: bool = False  # a run without unseen20 first, its zero-shot figures stored
    shipped_file: str = ""  # the file name in assets/models (default: NAME.safetensors)
    fit_codes: tuple[str, ...] = ()  # fit-codes arguments (DSSA: codes from its features)
    needs: tuple[str, ...] = ()  # recipes whose checkpoints this one starts from
    category: bool = True  # Sketchy-style data (smoke runs restrict its classes)
    evaluations: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("test", ("--store",)),  # the test split, HOG beside it
        ("doodles", ("--doodles", "{D}/quickdraw", "--store", "--no-baseline")),
    )

    @property
    def file(self) -> str:
        return self.shipped_file or f"{self.name}.safetensors"


# dssa-chairs-64 (issue 17): the trunk from the default model's sketch encoder with its last two
# stages trained, and the engine's edge maps at the threshold a new DSSA model gets (0.2, chosen
# on the training splits by the HOG of the edge maps alone; see DEVELOPERS.md)
DSSA_CONFIG = {
    "model": method_model_defaults("dssa", FINE_GRAINED),
    "options": {
        "edges": "engine",
        "true_match": 1.0,
        "in_batch": True,
        "active_only": True,
        "cache_trunk": True,
        "backbone_lr_scale": 0.3,
        "w_hash": 0.5,
        "trunk_from": "{trunk}",
        "train_stages": 2,
    },
}
# dssa-shoes-64 (stop 27): the same on both kinds of edge maps, the engine's and the data set's
# released ones, drawn per step; trained on the engine's alone, its codes met the released maps
# cold (acc@1 by code 13.6% and 12.6% over two seeds, against issue 17's 15%; DEVELOPERS.md)
DSSA_SHOES_CONFIG = {
    "model": DSSA_CONFIG["model"],
    "options": {**DSSA_CONFIG["options"], "edges": "both"},
}


def _args(text: str) -> tuple[str, ...]:
    """Command-line arguments written as one line."""
    return tuple(text.split())


DSSA_ARGS = _args("--bits 64 --image-size 224 --epochs 60 --batch-size 32 --lr 1e-3 --seed 0")
DSSA_FIT = ("--fit-on", "photos", "--from-features", "--hog-weight", "1")


def _fine_grained_evaluations(other: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The stored test figures, with the other data set's photos as distractors, and the
    re-ranked ones with the engine's and the released edge maps (not stored: shown)."""
    return (
        ("test", ("--store",)),
        ("extra_gallery", ("--extra-gallery", f"{{D}}/{other}", "--store", "--no-baseline")),
        ("reranked", ("--rerank", "--no-baseline")),
        ("released_edges", ("--edges", "released", "--rerank", "--no-baseline")),
    )


GDH_CONFIG = {
    "model": {
        "image_size": 128,
        "gen_channels": 8,
        "gi_blocks": 3,
        "gs_blocks": 2,
        "skip": True,
        "backbone": "efficientnet_lite0",
    },
    "options": {"disc_channels": 16, "hash_lr_scale": 5.0},
}
GDH_ARGS = "--epochs 6 --batch-size 32 --lr 2e-4 --schedule constant --seed 0"
ANCHOR_ARGS = (
    "--extra-data {D}/pacs --doodles {D}/quickdraw --doodle-classes imagenet --bits 64 "
    "--image-size 160 --epochs 8 --batch-size 48 --lr 3e-4 --schedule cosine --freeze-blocks 3 "
    "--max-steps-per-epoch 100 --seed 0"
)
SEMI3_ARGS = (
    "--bits 64 --image-size 128 --epochs 5 --batch-size 32 --per-class 4 --lr 3e-3 "
    "--freeze-blocks 2 --seed 0"
)

RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "anchor-64",
        "anchor",
        "sketchy",
        _args(ANCHOR_ARGS),
        {
            "weight_decay": 0.05,
            "warmup_steps": 50,
            "model": {"code_fit": "sketches", "photo_size": 192},
        },
        validate=True,
        shipped_file="default.safetensors",
    ),
    Recipe(
        "dsh-64",
        "dsh",
        "sketchy",
        ("--bits", "64", "--seed", "0"),
        {
            "model": {"image_size": 160, "dropout": 0.5, "fc_batchnorm": True},
            "options": {"sketch_trunk_from": "{trunk}"},
        },
        validate=True,
        needs=("anchor-64",),
    ),
    Recipe("gdh-64", "gdh", "sketchy", _args("--bits 64 " + GDH_ARGS), GDH_CONFIG, True),
    Recipe("gdh-128", "gdh", "sketchy", _args("--bits 128 " + GDH_ARGS), GDH_CONFIG),
    Recipe(
        "semi3-64",
        "semi3",
        "sketchy",
        _args(SEMI3_ARGS),
        {"options": {"backbone_lr_scale": 0.3, "w_align": 0.1, "w_contrast": 0.1}},
        validate=True,
    ),
    Recipe(
        "dssa-shoes-64",
        "dssa",
        "shoes_v1",
        DSSA_ARGS,
        DSSA_SHOES_CONFIG,
        fit_codes=DSSA_FIT,
        category=False,
        evaluations=_fine_grained_evaluations("chairs_v1"),
        needs=("anchor-64",),
    ),
    Recipe(
        "dssa-chairs-64",
        "dssa",
        "chairs_v1",
        DSSA_ARGS,
        DSSA_CONFIG,
        fit_codes=DSSA_FIT,
        category=False,
        evaluations=_fine_grained_evaluations("shoes_v1"),
        needs=("anchor-64",),
    ),
)
BY_NAME = {r.name: r for r in RECIPES}


def selected(names: list[str] | None) -> list[Recipe]:
    """The recipes to run for ``names`` (all: None), with the ones they start from, in order."""
    if not names:
        return list(RECIPES)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"Unknown model(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}.")
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(BY_NAME[name].needs)
    return [r for r in RECIPES if r.name in wanted]


class Plan:
    """The commands of a run, executed in order by ``run`` (``dry`` only lists them)."""

    def __init__(self, data: Path, out: Path, device: str | None, smoke: bool) -> None:
        self.data, self.out, self.device, self.smoke = data, out, device, smoke
        self.runs, self.models = out / "runs", out / "models"
        self.figures: dict[str, Any] = {"device": device or "best available", "smoke": smoke}
        self.log = out / "steps.log"

    # ------------------------------------------------------------------ commands
    def _train(self, recipe: Recipe, out: Path, validation: bool) -> list[str]:
        trunk = self.runs / "anchor-64-val.safetensors" if validation else self._file("anchor-64")
        text = json.dumps(recipe.config).replace("{trunk}", str(trunk))
        config = self.runs / f"{recipe.name}{'-val' if validation else ''}.json"
        config.write_text(text)
        args = [a.replace("{D}", str(self.data)) for a in recipe.args]
        cmd = ["train", "--method", recipe.method, "--data", str(self.data / recipe.data)]
        cmd += [*args, "--config", str(config), "--no-eval", "--no-validate", "--out", str(out)]
        if validation:
            cmd += ["--hold-out", "unseen20"]
        if self.smoke:
            cmd += ["--epochs", "1", "--max-steps-per-epoch", "2"]
            if recipe.category:
                cmd += ["--classes", *SMOKE_CLASSES]
        return cmd + self._device()

    def _evaluate(self, recipe: Recipe, model: Path, *extra: str) -> list[str]:
        extra = tuple(a.replace("{D}", str(self.data)) for a in extra)
        cmd = ["evaluate", "--model", str(model), "--data", str(self.data / recipe.data), *extra]
        if self.smoke and recipe.category and "unseen20" not in extra:
            cmd += ["--classes", *SMOKE_CLASSES]
        return [*cmd, "--json", *self._device()]

    def _device(self) -> list[str]:
        return ["--device", self.device] if self.device else []

    def _file(self, name: str) -> Path:
        return self.models / BY_NAME[name].file

    # ------------------------------------------------------------------ steps
    def steps(self, recipes: list[Recipe]) -> list[tuple[str, list[str] | None, Any]]:
        """(label, CLI arguments or None for an in-process step, what to do with the output)."""
        out: list[tuple[str, list[str] | None, Any]] = []
        for r in recipes:
            if r.validate:
                val = self.runs / f"{r.name}-val.safetensors"
                out.append((f"{r.name}: validation run", self._train(r, val, True), None))
                for stem, extra in (("u20", ()), ("u20d", ("--doodles", "{D}/quickdraw"))):
                    cmd = self._evaluate(r, val, "--protocol", "unseen20", *extra, "--no-baseline")
                    out.append((f"{r.name}: validation {stem}", cmd, (r.name, stem)))
            full, final = self.runs / f"{r.name}.safetensors", self._file(r.name)
            out.append((f"{r.name}: training", self._train(r, full, False), None))
            if r.fit_codes:
                fitted = self.runs / f"{r.name}-fitted.safetensors"
                cmd = ["fit-codes", str(full), "--data", str(self.data / r.data), *r.fit_codes]
                cmd += ["--name", r.name, "--out", str(fitted), *self._device()]
                out.append((f"{r.name}: codes", cmd, None))
                full = fitted
            compact = ["compact", str(full), str(final), "--name", r.name]
            out.append((f"{r.name}: float16", compact, None))
            for key, extra in r.evaluations:
                cmd = self._evaluate(r, final, *extra)
                out.append((f"{r.name}: figures {key}", cmd, (r.name, key)))
            if r.validate:
                out.append((f"{r.name}: validation stored", None, r))
        return out

    def run(self, recipes: list[Recipe], dry: bool = False) -> dict[str, Any]:
        self.runs.mkdir(parents=True, exist_ok=True)
        self.models.mkdir(parents=True, exist_ok=True)
        steps = self.steps(recipes)
        for label, cmd, then in steps:
            if dry:
                print(label, ":", "sketch-search " + " ".join(cmd) if cmd else "(in-process)")
                continue
            t = time.perf_counter()
            if cmd is None:
                store_validation(self._file(then.name), self.figures["evaluations"][then.name])
            else:
                print(f"[{time.strftime('%H:%M:%S')}] {label}", flush=True)
                stdout = self._call(label, cmd)
                if then is not None:
                    name, key = then
                    evals = self.figures.setdefault("evaluations", {}).setdefault(name, {})
                    evals[key] = json.loads(stdout)
            self.figures.setdefault("seconds", {})[label] = round(time.perf_counter() - t, 1)
            (self.out / "figures.json").write_text(json.dumps(summary(self.figures), indent=1))
        return self.figures

    def _call(self, label: str, cmd: list[str]) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *cmd], capture_output=True, text=True, check=False
        )
        with self.log.open("a") as log:
            log.write(f"== {label}\n$ sketch-search {' '.join(cmd)}\n{done.stderr}\n")
        if done.returncode != 0:
            raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout


def store_validation(checkpoint: Path, evaluations: dict[str, Any]) -> None:
    """Write the validation run's zero-shot figures into the shipped checkpoint's metrics, under
    ``protocols.unseen20_recipe_validation`` and ``..._doodles_...`` (``evaluate.store_figures``,
    as ``evaluate --store`` keeps its own protocols)."""
    for key, stem in VALIDATION_KEYS.items():
        figures = dict(evaluations[stem])
        figures["measured_on"] = {
            "model_id": figures.get("protocol", {}).get("model_id"),
            "trained_without": "unseen20",
            "note": "this model's recipe trained without the 20 unseen20 classes (this "
            "checkpoint saw them); zero-shot figures of the recipe, the proxy for subjects "
            "never trained on",
        }
        store_figures(checkpoint, figures, key)


def summary(figures: dict[str, Any]) -> dict[str, Any]:
    """The run's times and, per evaluation, the headline figures beside random."""
    out = {k: v for k, v in figures.items() if k != "evaluations"}
    heads: dict[str, Any] = {}
    for name, evals in figures.get("evaluations", {}).items():
        for key, report in evals.items():
            line = {
                f"{part} {metric}": report[part][metric]
                for part in ("metrics", "asymmetric", "expanded", "real_valued", "random")
                for metric in ("map_all", "acc@1", "acc@10")
                if metric in report.get(part, {})
            }
            heads[f"{name} {key}"] = line
    out["figures"] = heads
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.shipped", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="the shared data folder"
    )
    p.add_argument(
        "--out", type=Path, default=Path("runs/shipped"), help="where runs and models go"
    )
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: best available)")
    p.add_argument("--only", nargs="+", metavar="NAME", help=f"some of: {', '.join(BY_NAME)}")
    p.add_argument("--smoke", action="store_true", help="three classes, two steps an epoch")
    p.add_argument("--dry-run", action="store_true", help="list the commands only")
    a = p.parse_args(argv)
    plan = Plan(a.data.resolve(), a.out.resolve(), a.device, a.smoke)
    t = time.perf_counter()
    plan.run(selected(a.only), dry=a.dry_run)
    if not a.dry_run:
        print(f"Done in {time.perf_counter() - t:.0f} s; figures in {plan.out / 'figures.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
