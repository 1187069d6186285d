"""Frozen inference graphs of a model's sketch side and photo side.

The sketch encoder answers every query and the photo encoder every photo of an indexing run;
both spend much of their time in BatchNorm and Python dispatch that a frozen TorchScript graph
removes. ``freeze_side`` traces ``model.project(model.sketch_forward(x), "sketch")`` or
``model.project(model.photo_forward(x, edges), "photo")`` and freezes the trace for inference
(``torch.jit.freeze`` and ``optimize_for_inference``: BatchNorm folded into the convolutions,
constants propagated). The trace holds the weights as they are when it is built, so it is built
for an eval-mode model that no longer changes. Outputs stay within about 1e-5 of the eager
ones; a code bit can differ only where an output is that close to zero.

Measured on 2 threads (DEVELOPERS.md): the default's sketch side for one query 16.5 -> 10.2 ms
(one thread); its photo side on batches of 32 photos 15-20 -> 9-11 ms a photo, baseline's
16 -> 6.4 ms. Building takes about 1.2 s, so the indexer builds the photo graph only for runs
with at least ``FROZEN_PHOTOS_MIN`` photos to encode (``PhotoEncoder.for_run``).

Where a graph cannot be built or fails (a model on a GPU, tracing failing in some environment),
the model's own forward answers and the reason is logged once: the same answer, only slower.
Edge maps (DSH, Semi3-Net, DSSA) are computed by the model as before and passed to the graph.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import numpy as np
import torch

from engine.codes import pack_codes
from engine.models import SketchHashModel
from engine.models.base import photo_tensor

log = logging.getLogger(__name__)

FROZEN_PHOTOS_MIN = 200
"""Photos an indexing run must have to encode before the photo graph is built (it pays for
its ~1.2 s build after about 150 photos)."""


class _Side(torch.nn.Module):
    """A model's sketch or photo side with its projection: the values whose signs are the code."""

    def __init__(self, model: SketchHashModel, side: str) -> None:
        super().__init__()
        self.model, self.side = model, side

    def forward(self, x: torch.Tensor, edges: torch.Tensor | None = None) -> torch.Tensor:
        if self.side == "sketch":
            return self.model.project(self.model.sketch_forward(x), "sketch")
        return self.model.project(self.model.photo_forward(x, edges), "photo")


def why_not_frozen(model: SketchHashModel) -> str | None:
    """Why no graph can be built for this model (None: it can)."""
    if model.training:
        return "the model is in training mode"
    if model.device.type != "cpu":
        return f"the model runs on {model.device.type}"
    return None


def freeze_side(model: SketchHashModel, side: str) -> torch.jit.ScriptModule:
    """The frozen graph of ``side`` ("sketch": (n, 1, S, S) in; "photo": (n, 3, P, P) and, for a
    model with edge maps, their (n, 1, P, P) maps in); raises whatever tracing raises."""
    model.check_codes()
    if side == "sketch":
        size = model.sketch_size
        example: tuple[torch.Tensor, ...] = (torch.zeros(1, 1, size, size),)
    else:
        size = model.photo_size
        photos = torch.zeros(1, 3, size, size)
        edges = model.edge_maps(photos)
        example = (photos,) if edges is None else (photos, edges)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python-level branches
        traced = torch.jit.trace(_Side(model, side).eval(), example, check_trace=False)
        graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        graph(*example)  # the first call compiles: pay it here
    return graph


class PhotoEncoder:
    """``encode(photos)`` equals ``model.encode_photos(photos)`` (see the module docstring for
    the one difference), through the frozen photo graph once built."""

    def __init__(self, model: SketchHashModel) -> None:
        self.model = model
        self._graph: torch.jit.ScriptModule | None = None
        self.why_not = why_not_frozen(model)
        if self.why_not is None:
            try:
                self._graph = freeze_side(model, "photo")
            except Exception as exc:  # any failure leaves the model's own path, which works
                self._give_up(exc)

    @classmethod
    def for_run(cls, model: SketchHashModel, photos: int) -> Callable[[np.ndarray], np.ndarray]:
        """The encoding function of an indexing run with ``photos`` to encode: the frozen
        graph's for a long run of a model without re-ranking features, else the model's own."""
        if photos < FROZEN_PHOTOS_MIN or model.rerank_features:
            return model.encode_photos
        return cls(model).encode

    @property
    def frozen(self) -> bool:
        return self._graph is not None

    def encode(self, photos: np.ndarray) -> np.ndarray:
        """uint8 (n, P, P, 3) prepared photos to packed uint8 codes (n, K/8)."""
        graph = self._graph
        if graph is None:
            return self.model.encode_photos(photos)
        batch = photo_tensor(photos, self.model.photo_size, torch.device("cpu"))
        try:
            with torch.inference_mode():
                edges = self.model.edge_maps(batch)
                out = graph(batch) if edges is None else graph(batch, edges)
            return pack_codes(out.float().numpy())
        except Exception as exc:  # the model's own forward answers from now on
            self._give_up(exc)
            return self.model.encode_photos(photos)

    def _give_up(self, exc: Exception) -> None:
        self._graph = None
        self.why_not = f"{type(exc).__name__}: {exc}"
        log.warning("Photos are encoded by the model's own forward pass: %s", self.why_not)
