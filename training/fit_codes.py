"""Fitted codes for a model: on the training data at the end of training, or post hoc for an
existing checkpoint (``sketch-search fit-codes``).

What is fitted (``engine.models.fitted``): each domain's mean raw output and a PCA + ITQ
projection, from the raw outputs (eval mode, no augmentation) of the training sketches and
photos. The codes of every photo a library indexes depend on them, so they are fitted on
training data only:
- ``fit_checkpoint`` takes the ``train`` split of a data set with a ``split.json`` (the test
  split is refused) or, for a folder without one, the whole folder, and only the classes the
  model's training could see (``training.sources.trained_classes``: a validation run's
  held-out classes stay unseen by its codes too);
- the 21 zero-shot test classes of issue 16 (``training.data.is_hidden_class``) are dropped
  from whatever is fitted on, by the trainer too (``training_arrays``).

``fit_checkpoint`` writes a new checkpoint (the source is untouched) with ``codes="fitted"``,
the source's name, data and training metadata, and a ``codes_fit`` note of what it was fitted on;
the source's stored figures are left out (they measured its sign codes).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import Cancelled, ConfigError
from engine.models import load_checkpoint, model_id, read_checkpoint_info, save_checkpoint
from engine.models.fitted import (
    CodeFit,
    FitProgress,
    evenly_spaced,
    fit_model_codes,
    with_fitted_codes,
)
from training.arrays import PreparedData, prepare_arrays
from training.data import CATEGORY, is_hidden_class, load_dataset
from training.progress import relay
from training.sources import trained_classes

log = logging.getLogger(__name__)

FIT_SPLIT = "train"
FIT_HOG_BATCH = 32
SPREAD_ROWS = 2000  # sketches and photos whose pairs measure the HOG term's distance spreads
INTERIM_LIMIT = 512  # sketches and photos fitted on at the end of an epoch before the last


def training_arrays(data: PreparedData) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(sketches, photos, hidden class names dropped) of prepared training data: the rows of
    the zero-shot test classes left out, whatever the data set."""
    classes = data.dataset.classes
    if data.dataset.layout != CATEGORY:
        return data.sketches, data.photos, []
    hidden = np.array([is_hidden_class(c) for c in classes], bool)
    dropped = [c for c, h in zip(classes, hidden, strict=True) if h]
    if not dropped:
        return data.sketches, data.photos, []
    keep_s, keep_p = ~hidden[data.sketch_labels], ~hidden[data.photo_labels]
    log.info("Codes are not fitted on the zero-shot test classes: %s", ", ".join(dropped))
    return data.sketches[keep_s], data.photos[keep_p], dropped


def fit_summary(
    data: PreparedData,
    split: str | None,
    counts: tuple[int, int],
    dropped: list[str],
    fit: CodeFit,
    code_fit: str,
) -> dict[str, Any]:
    """The ``codes_fit`` note a fitted checkpoint keeps: what its codes were fitted on."""
    sketches, photos = counts
    return {
        "data": str(data.dataset.root),
        "split": split or "all (no split.json)",
        "sketches": sketches,
        "photos": photos,
        "hidden_classes_dropped": dropped,
        "classes": len(data.dataset.classes) - len(dropped),
        "rotation_fitted_on": code_fit,
        "itq_loss": [round(fit.losses[0], 4), round(fit.losses[-1], 4)],
    }


def fit_checkpoint(
    src: str | Path,
    data_dir: str | Path,
    out: str | Path,
    *,
    split: str | None = FIT_SPLIT,
    code_fit: str | None = None,
    from_features: bool = False,
    hog_weight: float | None = None,
    name: str | None = None,
    device: str | None = None,
    cancel: threading.Event | None = None,
) -> Generator[FitProgress, None, Path]:
    """Fit the codes of checkpoint ``src`` on ``data_dir`` and write the fitted copy to ``out``;
    yields progress (decoding, then the model's raw outputs), returns ``out``.
    ``from_features`` (DSSA): fit the codes on the model's features rather than on its hash
    layer's outputs (``codes_from="features"``). ``hog_weight`` (DSSA): the weight of the HOG
    term in its re-ranking distance (0: none; None keeps the source's); a model with that
    term has it fitted on the same training data (``fit_hog_term``)."""
    src, out = Path(src), Path(out)
    if out.resolve() == src.resolve():
        raise ConfigError("fit-codes writes a new checkpoint; give another --out than the source.")
    if split is not None and split != FIT_SPLIT:
        raise ConfigError(
            f"Codes are fitted on training data only: the '{FIT_SPLIT}' split, not '{split}'."
        )
    info = read_checkpoint_info(src)
    dataset = load_dataset(data_dir)
    if split is not None and dataset.splits:
        dataset = dataset.subset(split)
    else:
        log.warning("%s has no split.json: fitting on the whole folder.", dataset.root)
        split = None
    trained = (info.metadata.get("training") or {}).get("config") or {}
    dataset = trained_classes(dataset, trained)
    source = load_checkpoint(src, device=device)
    changes = {}
    if from_features:
        if "codes_from" not in {f.name for f in dataclasses.fields(source.config)}:
            raise ConfigError(
                f"{info.name} is a {source.method} model; only DSSA codes can be fitted on its "
                "features (--from-features)."
            )
        changes["codes_from"] = "features"
    if hog_weight is not None:
        if "hog_weight" not in {f.name for f in dataclasses.fields(source.config)}:
            raise ConfigError(
                f"{info.name} is a {source.method} model; only DSSA re-ranks with a HOG term "
                "(--hog-weight)."
            )
        changes["hog_weight"] = float(hog_weight)
    model = with_fitted_codes(source, code_fit, **changes)
    gen = prepare_arrays(dataset, model.photo_size, model.sketch_size, cancel or threading.Event())
    data = yield from _as_fit_progress(gen)
    sketches, photos, dropped = training_arrays(data)
    fit = yield from fit_model_codes(model, sketches, photos, cancel=cancel)
    kept = {k: info.metadata[k] for k in ("data", "training") if k in info.metadata}
    counts = len(sketches), len(photos)
    note = fit_summary(data, split, counts, dropped, fit, model.config.code_fit)
    if getattr(model, "hog_fit", None) is not None:
        note["hog_term"] = yield from fit_hog_term(model, sketches, photos, cancel)
    note["source"] = {"path": str(src.resolve()), "model_id": model_id(source)}
    return save_checkpoint(
        model,
        out,
        weights_dtype=info.metadata.get("weights_dtype", "float32"),
        name=name or f"{info.name}-fitted",
        **kept,
        codes_fit=note,
    )


def _as_fit_progress(gen) -> Generator[FitProgress, None, PreparedData]:
    """Relay a decoding generator's progress as FitProgress; return its value."""
    return relay(gen, lambda p: FitProgress(p.what, p.done, p.total))


def fit_hog_term(
    model, sketches: np.ndarray, photos: np.ndarray, cancel: threading.Event | None = None
) -> Generator[FitProgress, None, dict[str, Any]]:
    """Fit DSSA's HOG re-ranking term (``engine.models.dssa.HogTerm``) on training sketches
    and photos: the PCA of the drawings' unit HOG (centred by the photos' mean), and the spread
    (standard deviation over the training sketch-photo pairs, of at most ``SPREAD_ROWS`` of each)
    of the network's distance and of the HOG cosine distance, which scale the two terms alike.
    Returns its note."""
    from engine.hog import drawing_hog

    cancel = cancel or threading.Event()
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"s": [], "p": [], "fs": [], "fp": []}
    try:
        for kind, rows, to_drawings in (
            ("s", sketches, model.sketch_drawings),
            ("p", photos, lambda a: model.photo_drawings(a, None)),
        ):
            for i in range(0, len(rows), FIT_HOG_BATCH):
                if cancel.is_set():
                    raise Cancelled("Fitting the codes was cancelled.")
                with torch.no_grad():
                    drawings = to_drawings(rows[i : i + FIT_HOG_BATCH])
                    parts["f" + kind].append(model.features(drawings).float().cpu().numpy())
                parts[kind].append(drawing_hog(drawings, model.hog_fit.block))
                what = "sketch HOG" if kind == "s" else "photo HOG"
                yield FitProgress(what, min(i + FIT_HOG_BATCH, len(rows)), len(rows))
    finally:
        model.train(was_training)
    hs, hp = np.concatenate(parts["s"]), np.concatenate(parts["p"])
    fs, fp = np.concatenate(parts["fs"]), np.concatenate(parts["fp"])
    dim = model.config.hog_dim
    if dim > min(len(hs) + len(hp), hs.shape[1]):
        raise ConfigError(f"The HOG term's {dim} dimensions need more training drawings.")
    mean = hp.mean(axis=0)
    _, _, vt = np.linalg.svd(np.concatenate([hp, hs]) - mean, full_matrices=False)
    basis = vt[:dim].T.astype(np.float32)
    # the spreads over the pairs of at most SPREAD_ROWS sketches and photos, evenly spaced
    s_idx, p_idx = evenly_spaced(len(fs), SPREAD_ROWS), evenly_spaced(len(fp), SPREAD_ROWS)
    with torch.no_grad():
        on = {"device": model.device}
        learnt = model.distance(
            torch.from_numpy(fs[s_idx]).to(**on), torch.from_numpy(fp[p_idx]).to(**on)
        )
    term = model.hog_fit
    term.load(mean, basis, (1.0, 1.0))  # the projection first, as the model will make it
    ps, pp = term.project(hs[s_idx]), term.project(hp[p_idx])
    scales = (float(learnt.std()), float((1.0 - ps @ pp.T).std()))
    term.load(mean, basis, scales)
    log.info("HOG term fitted: %d dimensions, distance scales %.4g / %.4g", dim, *scales)
    return {
        "weight": model.config.hog_weight,
        "dimensions": dim,
        "scales": [round(v, 6) for v in scales],
        "sketches": len(hs),
        "photos": len(hp),
    }
