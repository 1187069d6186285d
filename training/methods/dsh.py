"""Training procedure of Deep Sketch Hashing (engine.models.dsh): the DSH objective and the
discrete code updates between epochs.

Paper: Liu, Shen, Shen, Liu, Shao, "Deep Sketch Hashing: Fast Free-hand Sketch-Based Image
Retrieval", CVPR 2017 (arXiv 1703.05605). Objective, with F1 / F2 the photo / sketch network
outputs (tanh of them here, see ``engine.models.dsh``), B^I / B^S the binary codes of every
training photo / sketch, Y their one-hot labels and D a projection from labels to codes::

    min  - sum_ij [ S_ij Theta_ij - log(1 + exp(Theta_ij)) ],  Theta_ij = F1_i . F2_j / 2
         + lam ( ||B^I - Y^I D||^2 + ||B^S - Y^S D||^2 ) + reg' ||D||^2
         + gamma ( ||B^I - F1||^2 + ||B^S - F2||^2 ),     B in {-1, +1}

1. cross-view pairwise loss (``training.losses.pairwise_likelihood``): the DPSH-style likelihood
   over every sketch x photo pair of the batch, S_ij = same class; mean over pairs, weight
   ``w_pair``.
2. semantic factorisation (``training.discrete``): the paper factorises word vectors of the
   class names, ||phi(Y) - D B||; no word vectors can be had here, so, as the issue says, D maps
   the one-hot labels to the codes (||B - Y D||). It involves B and D only, not the network.
3. quantisation: the network regresses its samples' current codes, mean over entries of
   (B - tanh(F))^2 (``code_regression``), weight ``w_quant`` (gamma in the network step).
Alternating optimisation: the network steps (1 + 3) with B and D fixed during an epoch; at every
epoch end (``on_epoch_end``) the nets run over the whole training set (eval mode, no
augmentation, the photos' token maps computed once by ``engine.edges`` and cached), then
``alternations`` rounds of the closed-form D step (ridge ``reg``, over photo and sketch codes
together: one D shared by both views, as the paper's) and the sign B step, photo and sketch
codes each against their own network outputs with mu = gamma / lam (option ``mu``). The paper
updates B and D once per epoch as well; the number of inner rounds is ours (3: the objective no
longer moves after it on Sketchy-size problems).

The recipe that finds classes it was not trained on (issue 16; the defaults):
- ``class_embedding="photo_prototypes"``: the factorisation goes through a class embedding
  (``training.discrete.class_embedding``): each class's mean C1 feature over its training photos,
  centred, its ``embedding_dim`` main directions, normalised. It stands in for the paper's word
  vectors, which cannot be had here, and does their job: classes that look alike get nearby codes.
  ``"one_hot"`` is the factorisation on the labels alone (each class its own random code).
- ``init_codes="class"`` then starts each class at the signs of a seeded random projection of its
  embedding row (``discrete.embedding_codes``), so related classes start with shared bits.
- ``cache_trunks``: both trunks stay frozen and run once per image before the first step (photos
  through C1, their token maps and the sketches through C2, no augmentation); the FC streams and
  hash layers train on those cached features, so a CPU run takes thousands of head steps in
  minutes instead of a few hundred trunk steps in an hour.
- ``sketch_trunk_from``: C2-Net starts from the sketch encoder of an ``anchor`` checkpoint
  (``"default"``: the shipped default model; a path; ``""``: ImageNet's weights), a trunk that
  already learnt to read line drawings on Sketchy, PACS and QuickDraw doodles (none of the
  hidden zero-shot classes). The paper starts C2-Net from its own sketch pre-training; ours is
  that encoder. It applies to a new model only: a resumed run or a fine-tune keeps its weights.
Measured on the class-disjoint protocol (unseen20 held out of training; DEVELOPERS.md has every
variant): the previous recipe (one-hot, random class codes, trunks trained 204 steps) learnt
almost nothing (0.053 on the seen Sketchy test split); cached frozen trunks with one-hot codes
0.21 Hamming on unseen20, with ImageNet's C2 and photo-prototype codes 0.26, with the anchor's
C2 and photo-prototype codes 0.33 (0.37 with the app's asymmetric ranking and expansion).

Choices where the paper is vague:
- Initial codes (``init_codes``): ``class``: a code per class (above; with ``one_hot``, a random
  +-1 code seeded by the run's seed), every sample starting at its class code and D at those
  codes; ``network``: sign of the
  untrained nets' outputs, then the D/B steps. ``class`` is the default: the untrained outputs
  carry no class information, and distinct class codes give the regression term a target that
  already separates classes (about K/2 bits apart) from the first step. A fine-tune
  (``TrainConfig.init_from``) starts from ``network`` unless the option is given: a trained
  model's outputs already carry its classes, and fresh random class codes would make it
  unlearn them (its first epoch would regress every sample to an arbitrary new code).
- Weights (ours; the paper's lambda / gamma were not checked in this session): w_pair 1,
  w_quant 1, mu 1, reg 1. Every loss is a mean, so the weights do not depend on the batch size.
- Batches: class-balanced (``batch_size / per_class`` classes, ``per_class`` sketches and as many
  photos of each), so every batch has positive and negative pairs. Token maps of the *augmented*
  photos are computed on the fly, so a photo and its map show the same crop.
- AdamW; the pretrained trunks at ``backbone_lr_scale`` x lr; ``freeze_blocks`` freezes the stem
  and lowest stages of BOTH trunks (C1 and C2). The paper trains with SGD on a GPU.
- ``train_defaults`` are the recipe of the shipped ``dsh-64`` (the cached trunks above, 15
  epochs of 48, lr 1e-3 constant), and its ``"model"`` entry the model options it was run with,
  which the Train panel and ``sketch-search train`` take for a new model: 160 px, dropout 0.5 and
  BatchNorm after the FC layers (``fc_batchnorm``; without it 0.360 against 0.386 on unseen20 as
  the app searches, one seed). The config class keeps the paper's values (no FC BatchNorm) and
  the 224 px default. An earlier recipe trained the trunks at lr 1e-2: at 1e-3 with the paper's
  FCs the outputs sat at the pairwise loss's input-independent optimum, and without BatchNorm
  after the FCs lr 1e-2 blew up on all 104 classes into constant outputs; BatchNorm keeps the
  hidden units varying across the batch.
- B, D and whether they were initialised are procedure state: ``extra_state`` carries them, so
  a resumed run keeps its codes.

Across processes (``training.distributed``): the pass over the training set is split, each
process running the nets over its own contiguous rows of the photos and sketches (and computing
their token maps), and the outputs are all-gathered, so every process holds all of them in
order; the D/B alternation then runs on every process on the same inputs, and rank 0's B and D
are broadcast, so floating-point differences between machines cannot leave the processes with
different codes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from typing import Any, ClassVar

import numpy as np
import torch

from engine.errors import ConfigError
from engine.models.base import photo_tensor, sketch_tensor
from engine.models.dsh import DSHModel
from training import discrete, losses
from training.arrays import PrepareProgress, photo_batch
from training.augment import PairBatches
from training.methods import register_procedure
from training.procedure import StepContext, TrainingProcedure, freeze_backbone_blocks

log = logging.getLogger(__name__)

INIT_CODES = ("class", "network")
CLASS_EMBEDDINGS = ("photo_prototypes", "one_hot")
_CHUNK = 64


def code_regression(outputs: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean over entries of (B - u)^2: relaxed outputs u regress their binary codes B."""
    return (codes.to(outputs.dtype) - outputs).pow(2).mean()


def _rows(parts: list[np.ndarray], width: int) -> torch.Tensor:
    """The concatenated float32 output rows of a pass (none: an empty (0, width))."""
    if not parts:
        return torch.empty(0, width)
    return torch.from_numpy(np.concatenate(parts))


def class_codes(num_classes: int, bits: int, seed: int) -> torch.Tensor:
    """A random +-1 code per class, (C, K), a function of ``seed`` only."""
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(num_classes, bits, generator=g) < 0.5, -1.0, 1.0)


@register_procedure
class DSHProcedure(TrainingProcedure):
    method = "dsh"
    default_options: ClassVar[dict[str, Any]] = {
        "w_pair": 1.0,
        "w_quant": 1.0,
        "mu": 1.0,
        "reg": 1.0,
        "alternations": 3,
        "init_codes": "class",
        "class_embedding": "photo_prototypes",
        "embedding_dim": 32,
        "cache_trunks": True,
        "sketch_trunk_from": "default",
        "backbone_lr_scale": 0.1,
        "augment": True,
    }
    train_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 15,
        "batch_size": 48,
        "per_class": 4,
        "lr": 1e-3,
        "schedule": "constant",
        "warmup_steps": 0,
        "model": {"image_size": 160, "dropout": 0.5, "fc_batchnorm": True},
    }

    def __init__(self, model, data, config, device) -> None:
        super().__init__(model, data, config, device)
        if not isinstance(model, DSHModel):
            raise ConfigError("The dsh procedure trains dsh models only.")
        o = self.options
        if config.init_from is not None and "init_codes" not in config.options:
            o["init_codes"] = "network"  # start from the trained model's codes (docstring)
        if o["init_codes"] not in INIT_CODES:
            raise ConfigError(f"dsh init_codes must be one of {INIT_CODES}.")
        if o["class_embedding"] not in CLASS_EMBEDDINGS:
            raise ConfigError(f"dsh class_embedding must be one of {CLASS_EMBEDDINGS}.")
        if not 1 <= int(o["embedding_dim"]) <= 1024:
            raise ConfigError("dsh embedding_dim must be between 1 and 1024.")
        if float(o["mu"]) < 0 or float(o["reg"]) <= 0 or int(o["alternations"]) < 1:
            raise ConfigError("dsh options need mu >= 0, reg > 0 and alternations >= 1.")
        lite = model.config.backbone == "efficientnet_lite0"
        if config.freeze_blocks and not lite:
            raise ConfigError("freeze_blocks needs the efficientnet_lite0 backbone.")
        self.cached = bool(o["cache_trunks"]) and lite
        if o["cache_trunks"] and not lite:
            log.info(
                "cache_trunks applies to the efficientnet_lite0 backbone only; training it all."
            )
        if self.cached:  # both trunks whole, BatchNorm statistics included
            for trunk in (model.c1, model.c2):
                trunk.requires_grad_(False)
                self.frozen.append(trunk)
        elif lite:
            for trunk in (model.c1, model.c2):
                self.frozen += freeze_backbone_blocks(trunk.net, config.freeze_blocks)
        size = model.config.image_size
        self.pairs = PairBatches(size, augment=self.options["augment"])
        self.num_classes = len(data.dataset.classes)
        self.photo_labels = torch.from_numpy(data.photo_labels)
        self.sketch_labels = torch.from_numpy(data.sketch_labels)
        self._edges: np.ndarray | None = None
        self.cache: dict[str, torch.Tensor] = {}  # "photo", "token", "sketch": trunk features
        self.embedding: torch.Tensor | None = None  # (C, d + 1) with photo_prototypes
        # codes B (training photos, sketches) and the projection D, on the CPU; with a class
        # embedding the class codes are set in ``prepare``, once the photo features are known
        d0 = class_codes(self.num_classes, model.bits, config.seed)
        self.projection = d0
        self.photo_codes = d0[self.photo_labels].clone()
        self.sketch_codes = d0[self.sketch_labels].clone()
        self.codes_ready = o["init_codes"] == "class"

    # ------------------------------------------------------------------ a new model's start
    def start_new_model(self) -> None:
        """C2-Net from the ``sketch_trunk_from`` checkpoint's sketch encoder (see docstring)."""
        if self.model.config.backbone != "efficientnet_lite0":
            return
        if self.load_sketch_encoder(self.model.c2.net, "sketch_trunk_from"):
            log.info(
                "DSH's C2-Net starts from the sketch encoder of %s",
                self.options["sketch_trunk_from"],
            )

    # ------------------------------------------------------------------ prepare
    def prepare(self, cancel: threading.Event) -> Generator[PrepareProgress, None, None]:
        """The cached trunk features (``cache_trunks``), then the class embedding and the class
        codes it gives (``class_embedding="photo_prototypes"``)."""
        model = self.model
        if self.cached:
            yield from self._cache_trunks(cancel)
        if self.options["class_embedding"] != "photo_prototypes":
            return
        if self.cached:
            features = self.cache["photo"]
        else:
            photos = self.data.photos
            features = yield from self._trunk_rows(model.c1, photos, "photo features", cancel)
        self.embedding = discrete.class_embedding(
            features, self.photo_labels, self.num_classes, int(self.options["embedding_dim"])
        )
        if self.options["init_codes"] == "class":
            d0 = discrete.embedding_codes(self.embedding, model.bits, self.config.seed)
            self.photo_codes = d0[self.photo_labels].clone()
            self.sketch_codes = d0[self.sketch_labels].clone()
            self.projection = discrete.d_step(
                torch.cat([self.photo_codes, self.sketch_codes]),
                torch.cat([self.photo_labels, self.sketch_labels]),
                float(self.options["reg"]),
                embedding=self.embedding,
            )

    def _trunk_rows(self, trunk, arrays: np.ndarray, what: str, cancel) -> Generator:
        """Pooled features (n, F), on the CPU, of ``trunk`` in eval mode on uint8 photos
        (n, P, P, 3) or drawings (n, S, S) at the model's size."""
        size, device = self.model.config.image_size, self.device
        to_tensor = photo_tensor if arrays.ndim == 4 else sketch_tensor
        self.model.eval()  # the trainer puts it back in training mode before the first step
        rows = yield from self.forward_rows(
            trunk, arrays, lambda a: to_tensor(a, size, device), what, cancel, _CHUNK
        )
        return rows.cpu()

    def _cache_trunks(self, cancel) -> Generator:
        model, data = self.model, self.data
        self.cache["photo"] = yield from self._trunk_rows(
            model.c1, data.photos, "photo features", cancel
        )
        if model.config.sketch_tokens:
            edges = self._edge_maps(0, len(data.photos))
            self.cache["token"] = yield from self._trunk_rows(
                model.c2, edges, "token-map features", cancel
            )
        self.cache["sketch"] = yield from self._trunk_rows(
            model.c2, data.sketches, "sketch features", cancel
        )

    def _edge_maps(self, start: int, stop: int) -> np.ndarray | None:
        """uint8 (stop - start, S, S) token maps (engine.edges) of those training photos."""
        maps = []
        with torch.no_grad():
            for i in range(start, stop, _CHUNK):
                batch = photo_batch(self.data.photos[i : min(i + _CHUNK, stop)], self.device)
                maps.append(self.model.edge_maps(batch)[:, 0].mul(255.0).round())
        return torch.cat(maps).to(torch.uint8).cpu().numpy() if maps else None

    # ------------------------------------------------------------------ optimisers and state
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        model = self.model
        pretrained = model.config.backbone == "efficientnet_lite0" and model.config.pretrained
        return self.adamw_with_slow_trunk((model.c1, model.c2) if pretrained else ())

    def extra_state(self) -> dict[str, Any]:
        state = {
            "photo_codes": self.photo_codes.to(torch.int8),
            "sketch_codes": self.sketch_codes.to(torch.int8),
            "projection": self.projection.clone(),
            "codes_ready": self.codes_ready,
        }
        if self.embedding is not None:
            state["embedding"] = self.embedding.clone()
        return state

    def load_extra_state(self, state) -> None:
        for name in ("photo_codes", "sketch_codes"):
            codes = state[name]
            if codes.shape != getattr(self, name).shape:
                raise ConfigError(
                    f"The resume state's {name} {tuple(codes.shape)} do not fit this data "
                    f"{tuple(getattr(self, name).shape)}; resume on the same data set and classes."
                )
            setattr(self, name, codes.float())
        self.projection = state["projection"].float()
        self.codes_ready = bool(state["codes_ready"])
        if "embedding" in state:  # the run's own, not one recomputed from trained trunks
            self.embedding = state["embedding"].float()

    # ------------------------------------------------------------------ batches
    def epoch_batches(self, epoch: int, generator: torch.Generator) -> list[Any]:
        return self.category_batches(generator)

    # ------------------------------------------------------------------ discrete steps
    def _cached_outputs(self, rows: slice | torch.Tensor, photos: bool) -> torch.Tensor:
        """The model's outputs from cached trunk features (the heads in the current mode)."""
        model, c = self.model, self.cache
        if not photos:
            return model._sketch_head(c["sketch"][rows].to(self.device))
        tokens = c["token"][rows].to(self.device) if "token" in c else None
        return model._photo_head(c["photo"][rows].to(self.device), tokens)

    def network_outputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """tanh of the nets' outputs on every training photo and sketch (eval mode); each
        process runs its ``dist.chunk`` of them, and all of them are gathered."""
        model, data, dist = self.model, self.data, self.dist
        rows_p, rows_s = dist.chunk(len(data.photos)), dist.chunk(len(data.sketches))
        if self.cached:
            was = model.training
            model.eval()
            try:
                with torch.no_grad():
                    fp = self._cached_outputs(slice(rows_p.start, rows_p.stop), True)
                    fs = self._cached_outputs(slice(rows_s.start, rows_s.stop), False)
            finally:
                if was:
                    self.train_mode()
            return (
                torch.tanh(dist.gather_rows(fp.float().cpu())),
                torch.tanh(dist.gather_rows(fs.float().cpu())),
            )
        first = rows_p.start
        if self._edges is None and model.config.sketch_tokens:
            self._edges = self._edge_maps(first, rows_p.stop)
        photos = []
        for i in range(first, rows_p.stop, _CHUNK):
            end = min(i + _CHUNK, rows_p.stop)
            edges = None if self._edges is None else self._edges[i - first : end - first]
            photos.append(model.embed_photos(data.photos[i:end], edges, raw=True))
        sketches = [
            model.embed_sketches(data.sketches[i : min(i + _CHUNK, rows_s.stop)], raw=True)
            for i in range(rows_s.start, rows_s.stop, _CHUNK)
        ]
        return (
            torch.tanh(dist.gather_rows(_rows(photos, model.bits))),
            torch.tanh(dist.gather_rows(_rows(sketches, model.bits))),
        )

    def update_codes(self) -> dict[str, float]:
        """The D and B steps on the current network outputs; returns their figures."""
        o = self.options
        fp, fs = self.network_outputs()
        labels = torch.cat([self.photo_labels, self.sketch_labels])
        features = torch.cat([fp, fs])
        before = torch.cat([self.photo_codes, self.sketch_codes])
        codes, d = discrete.alternate(
            labels,
            features,
            float(o["reg"]),
            float(o["mu"]),
            codes=before if self.codes_ready else None,
            num_classes=self.num_classes,
            iterations=int(o["alternations"]),
            embedding=self.embedding,
        )
        self.dist.broadcast_tensors([codes, d])  # rank 0's solve (docstring)
        n = len(fp)
        self.photo_codes, self.sketch_codes, self.projection = codes[:n], codes[n:], d
        self.codes_ready = True
        objective = discrete.factorisation_objective(
            codes, labels, d, float(o["reg"]), features, float(o["mu"]), self.embedding
        )
        return {
            "factorisation": float(objective) / codes.numel(),
            "codes_flipped": float((codes != before).float().mean()),
            "sign_agreement": float(
                (torch.where(features >= 0, 1.0, -1.0) == codes).float().mean()
            ),
        }

    def on_epoch_start(self, epoch: int) -> None:
        if not self.codes_ready:  # init_codes="network": codes from the untrained nets
            self.update_codes()

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        figures = self.update_codes()
        log.info("DSH codes updated after epoch %d: %s", epoch + 1, figures)
        return figures

    # ------------------------------------------------------------------ step
    def _inputs(self, s_idx, p_idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        s, p = self.pairs(self.data.sketches, self.data.photos, s_idx, p_idx)
        s, p = s.to(self.device), p.to(self.device)
        return s, p, self.model.edge_maps(p)

    def step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        o = self.options
        s_idx, p_idx = (torch.as_tensor(np.asarray(i), dtype=torch.int64) for i in batch)
        ys, yp = self.sketch_labels[s_idx], self.photo_labels[p_idx]
        if self.cached:
            with ctx.autocast():
                out_s = self._cached_outputs(s_idx, False)
                out_p = self._cached_outputs(p_idx, True)
        else:
            sketches, photos, edges = self._inputs(s_idx, p_idx)
            with ctx.autocast():
                out_s, out_p = self.model.pair_forward(sketches, photos, edges)
        us, up = torch.tanh(out_s.float()), torch.tanh(out_p.float())
        same = losses.same_class(ys, yp).to(self.device)
        targets = torch.cat([self.sketch_codes[s_idx], self.photo_codes[p_idx]]).to(self.device)
        terms = {
            "pair": losses.pairwise_likelihood(us, up, same),
            "quant": code_regression(torch.cat([us, up]), targets),
        }
        total = float(o["w_pair"]) * terms["pair"] + float(o["w_quant"]) * terms["quant"]
        ctx.update(total)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["total"] = float(total.detach())
        return out
