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

Two runtimes run a side (``RUNTIMES``). ONNX Runtime, first where it is installed: the same
trace exported to ONNX (in memory, never a file) and run by an ``onnxruntime`` session on a fixed
number of threads, its idle threads not spinning (they would take the cores from the decoding
threads and the GUI thread). Measured for the default's sketch side on one thread: 6.8-7.6 ms
against 9.8-10.4 for TorchScript, outputs within 6e-6 (DEVELOPERS.md, issue 16). TorchScript
(``torch.jit.freeze``) where ONNX Runtime or ``onnx`` (which torch's exporter needs) is missing
or the export fails: the same answer, slower.

Where a graph cannot be built or fails (a model on a GPU, tracing failing in some environment),
the model's own forward answers and the reason is logged once: the same answer, only slower.
Edge maps (DSH, Semi3-Net, DSSA) are computed by the model as before and passed to the graph.
"""

from __future__ import annotations

import io
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


RUNTIMES = ("onnxruntime", "torchscript")
"""The runtimes a frozen side can run on, in the order ``freeze_side`` tries them."""

Graph = Callable[..., torch.Tensor]
"""A frozen side: float32 tensors in (images, then edge maps where the model has them), the
side's float32 outputs (n, K) out."""


class OnnxGraph:
    """A side exported to ONNX and run by an ONNX Runtime session on ``threads`` threads."""

    runtime = "onnxruntime"

    def __init__(self, module: torch.nn.Module, example: tuple[torch.Tensor, ...], threads: int):
        import onnxruntime  # first: without it there is nothing to export for

        self.inputs = ["x", "edges"][: len(example)]
        batch = {name: {0: "n"} for name in [*self.inputs, "y"]}
        proto = io.BytesIO()
        torch.onnx.export(  # the TorchScript-based exporter: no onnxscript, any opset 17 op
            module,
            example,
            proto,
            dynamo=False,
            opset_version=17,
            input_names=self.inputs,
            output_names=["y"],
            dynamic_axes=batch,
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its notes would flood the app's log
        self.session = onnxruntime.InferenceSession(
            proto.getvalue(), options, providers=["CPUExecutionProvider"]
        )
        self.used = {i.name for i in self.session.get_inputs()}  # the export drops unread ones

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        feed = {
            name: np.ascontiguousarray(t.detach().float().numpy())
            for name, t in zip(self.inputs, tensors, strict=True)
            if name in self.used
        }
        return torch.from_numpy(self.session.run(None, feed)[0])


def runtime_of(graph: Graph | None) -> str | None:
    """The runtime a frozen side runs on (None: no frozen side, the model's own forward)."""
    if graph is None:
        return None
    return getattr(graph, "runtime", "torchscript")


def why_not_frozen(model: SketchHashModel) -> str | None:
    """Why no graph can be built for this model (None: it can)."""
    if model.training:
        return "the model is in training mode"
    if model.device.type != "cpu":
        return f"the model runs on {model.device.type}"
    return None


def freeze_side(
    model: SketchHashModel, side: str, threads: int | None = None, runtimes=RUNTIMES
) -> Graph:
    """The frozen graph of ``side`` ("sketch": (n, 1, S, S) in; "photo": (n, 3, P, P) and, for a
    model with edge maps, their (n, 1, P, P) maps in) on the first of ``runtimes`` that builds
    (ONNX Runtime on ``threads`` threads, None: torch's count now; TorchScript, which follows
    torch's count at each call); raises what the last one raised."""
    model.check_codes()
    if side == "sketch":
        size = model.sketch_size
        example: tuple[torch.Tensor, ...] = (torch.zeros(1, 1, size, size),)
    else:
        size = model.photo_size
        photos = torch.zeros(1, 3, size, size)
        edges = model.edge_maps(photos)
        example = (photos,) if edges is None else (photos, edges)
    module = _Side(model, side).eval()
    for i, runtime in enumerate(runtimes):
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on Python-level branches
                if runtime == "onnxruntime":
                    graph: Graph = OnnxGraph(module, example, threads or torch.get_num_threads())
                else:
                    traced = torch.jit.trace(module, example, check_trace=False)
                    graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
                graph(*example)  # the first call compiles: pay it here
            return graph
        except Exception as exc:
            if i == len(runtimes) - 1:
                raise
            why = (str(exc).strip().splitlines() or [""])[0][:200]  # exporters dump graphs
            log.info(
                "The %s side does not run on %s: %s: %s", side, runtime, type(exc).__name__, why
            )
    raise ValueError("freeze_side needs at least one runtime")


class PhotoEncoder:
    """``encode(photos)`` equals ``model.encode_photos(photos)`` (see the module docstring for
    the one difference), through the frozen photo graph once built."""

    def __init__(self, model: SketchHashModel, runtimes: tuple[str, ...] = RUNTIMES) -> None:
        self.model = model
        self._graph: Graph | None = None
        self.why_not = why_not_frozen(model)
        if self.why_not is None:
            try:
                self._graph = freeze_side(model, "photo", runtimes=runtimes)
            except Exception as exc:  # any failure leaves the model's own path, which works
                self._give_up(exc)

    @classmethod
    def for_run(cls, model: SketchHashModel, photos: int) -> Callable[[np.ndarray], np.ndarray]:
        """The function an indexing run with ``photos`` to encode embeds with (prepared photos
        to float (n, K) outputs, as ``model.embed_photos``): the frozen graph's for a long run of
        a model without re-ranking features, else the model's own."""
        if photos < FROZEN_PHOTOS_MIN or model.rerank_features:
            return model.embed_photos
        return cls(model).embed

    @property
    def frozen(self) -> bool:
        return self._graph is not None

    @property
    def runtime(self) -> str | None:
        """What encodes photos: a runtime of ``RUNTIMES``, or None for the model's own path."""
        return runtime_of(self._graph)

    def encode(self, photos: np.ndarray) -> np.ndarray:
        """uint8 (n, P, P, 3) prepared photos to packed uint8 codes (n, K/8)."""
        return pack_codes(self.embed(photos))

    def embed(self, photos: np.ndarray) -> np.ndarray:
        """uint8 (n, P, P, 3) prepared photos to float32 (n, K) outputs, whose signs are the
        codes (``model.embed_photos``)."""
        graph = self._graph
        if graph is None:
            return self.model.embed_photos(photos)
        batch = photo_tensor(photos, self.model.photo_size, torch.device("cpu"))
        try:
            with torch.inference_mode():
                edges = self.model.edge_maps(batch)
                out = graph(batch) if edges is None else graph(batch, edges)
            return out.float().numpy()
        except Exception as exc:  # the model's own forward answers from now on
            self._give_up(exc)
            return self.model.embed_photos(photos)

    def _give_up(self, exc: Exception) -> None:
        self._graph = None
        self.why_not = f"{type(exc).__name__}: {exc}"
        log.warning("Photos are encoded by the model's own forward pass: %s", self.why_not)
