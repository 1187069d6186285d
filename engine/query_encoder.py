"""The sketch side of a search, one query at a time, frozen for inference.

A search encodes one sketch and waits for it: that forward pass is most of a query's time
(issue 16's bench: 15-24 ms of a 20-30 ms query on 2 loaded cores, the index search 4 ms at a
million codes). ``QueryEncoder`` uses the model's frozen sketch side (``engine.frozen``) for a
(1, 1, S, S) input. Measured with the default model on one thread: 16.5 ms
eager, 10.2 ms frozen by TorchScript, 6.8-7.6 ms on ONNX Runtime (the first choice), outputs
within 1e-5 of the eager ones.

Training and evaluation keep the model's own forward; long indexing runs use the frozen photo
side (``engine.frozen.PhotoEncoder``). The frozen graph holds the weights as they were when it was
built; a searcher's model is in eval mode and never changes (``engine.searcher``), and a new
model gets a new searcher. Where the graph cannot be built (a model on another device than the
CPU, a batch of more than one sketch, or tracing failing in some environment), ``embed`` uses the
model's own ``embed_sketches`` and logs why once: the answer is the same, only slower.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import torch

from engine.devices import torch_threads
from engine.frozen import RUNTIMES, Graph, freeze_side, runtime_of, why_not_frozen
from engine.models import SketchHashModel
from engine.models.base import sketch_tensor

log = logging.getLogger(__name__)

QUERIES_RUN_ON = "Sketch queries run on"
"""The start of the log line that names the frozen query graph's runtime, once built."""


class QueryEncoder:
    """``embed(sketches)`` equals ``model.embed_sketches(sketches)`` (within 1e-5), through a
    frozen graph for single CPU queries once ``warm_up`` has built it. Until then the model's
    own path answers: building takes about a second, which a one-query command (``query``)
    would pay on top of its one encoding, so only a long-lived searcher (the app's, on the
    thread that loads its model) builds it."""

    def __init__(
        self, model: SketchHashModel, threads: int | None = None, runtimes=RUNTIMES
    ) -> None:
        self.model = model
        self.threads = threads  # threads for a frozen query (None: the process's torch threads)
        self.runtimes = runtimes  # those to try, in order (engine.frozen.RUNTIMES)
        self._graph: Graph | None = None
        self._tried = False
        self._lock = threading.Lock()
        self.why_not: str | None = None  # why the frozen graph is not used, once known

    @property
    def frozen(self) -> bool:
        """True once the frozen graph is built and in use."""
        return self._graph is not None

    @property
    def runtime(self) -> str | None:
        """The frozen graph's runtime (``engine.frozen.RUNTIMES``), None before or without it."""
        return runtime_of(self._graph)

    def warm_up(self) -> None:
        """Build the frozen graph (about a second), e.g. on the thread that loads a model;
        ``embed`` uses it from then on, on ``threads`` torch threads (the app leaves a core to
        its GUI thread, ``engine.devices.threads_beside_gui``)."""
        self._build()

    def embed(self, sketches: np.ndarray) -> np.ndarray:
        """uint8 (n, S, S) normalised sketches to float32 (n, K) outputs, as
        ``model.embed_sketches``."""
        arr = np.asarray(sketches)
        if arr.ndim == 3 and len(arr) == 1 and not self.model.training:
            graph = self._graph
            if graph is not None:
                self.model.check_codes()
                batch = sketch_tensor(arr, self.model.sketch_size, torch.device("cpu"))
                # an ONNX Runtime session keeps the threads it was built with; torch's count
                # matters to a TorchScript graph only
                torch_side = None if runtime_of(graph) == "onnxruntime" else self.threads
                with torch.inference_mode(), torch_threads(torch_side):
                    return graph(batch).float().numpy()
        return self.model.embed_sketches(arr)

    def _build(self) -> Graph | None:
        with self._lock:
            if self._tried:
                return self._graph
            self._tried = True
            self._graph = self._trace()
            if self._graph is not None:
                log.info("%s: %s", QUERIES_RUN_ON, runtime_of(self._graph))
            return self._graph

    def _trace(self) -> Graph | None:
        self.why_not = why_not_frozen(self.model)
        if self.why_not is not None:
            return None
        try:
            return freeze_side(self.model, "sketch", self.threads, self.runtimes)
        except Exception as exc:  # any failure leaves the model's own path, which works
            self.why_not = f"{type(exc).__name__}: {exc}"
            log.warning("Sketch queries use the model's own forward pass: %s", self.why_not)
            return None
