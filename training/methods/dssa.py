"""Training procedure of DSSA (engine.models.dssa).

Paper: Song et al., "Deep Spatial-Semantic Attention for Fine-Grained SBIR", ICCV 2017.
Choices, where the paper is vague or where the hash layer (not in the paper) needs them:
- Triplets (sketch, positive photo, negative photo), one per sketch per epoch: with probability
  ``true_match`` its own photo vs a random other photo (or a mined hard negative with
  ``hard_negatives``), else a pair from the human annotations of ``triplets.json`` where the
  sketch has them. QMUL-Shoe's annotations rank mostly *other* photos against each other (135
  pairs a sketch, few with the true match), so annotations alone hardly teach the true match
  that retrieval is measured on; 0.5 mixes both (the paper trains on both kinds); the default
  1.0 is that of the measured CPU recipe (not measured apart from its other changes).
- ``in_batch`` (default, not in the paper): each sketch's positive is ranked against every
  other photo of the batch (B - 1 negatives from one forward pass of B sketches and B edge
  maps) instead of against its one drawn negative (3B images for B hinges). With 304 training
  pairs the paper's one-negative triplets teach too little per CPU step; the hinge, margin
  and HOLEF distance are the paper's. The sketch's own photo is never a negative (annotated
  rows rank two other photos). ``in_batch=False`` is the paper's sampling (and the only one
  that uses ``hard_negatives``). ``active_only``: average the in-batch hinges over the violated
  ones only (the easy negatives of a batch otherwise dilute the few that matter for acc@1).
- ``cache_trunk`` (a CPU configuration, not in the paper): the pretrained trunk's stem and
  seven stages are frozen and run once per drawing (and its mirror image) before training; each
  step trains only the trunk's head conv, the reduction, attention, FC6/FC7, W and the hash
  layer on the cached stage-7 maps, so one CPU hour buys a hundred epochs at 224 px instead of
  a few. Augmentation is then the flip only (a random crop would need the trunk again). On
  by default (the ``paper`` backbone, which has no pretrained trunk, ignores it). The cache is
  built in ``prepare`` (with progress and cancel), after ``trunk_from`` has loaded its weights.
  ``train_stages`` (default 0): the trunk's last stages that still learn (at ``lr`` x
  ``backbone_lr_scale``, BatchNorm in training mode); the cache then holds the map below them.
- ``trunk_from`` (not in the paper's words, but its idea): the paper's backbone was pre-trained
  to classify sketches and edge maps before the triplet stage. "default" starts the trunk from
  the default model's sketch encoder (an EfficientNet-Lite0 trained on Sketchy, PACS and
  QuickDraw sketches, none of QMUL's), a path from another anchor checkpoint's, "" (default)
  keeps ImageNet's weights. Only a new model loads it (not a resumed run or a fine-tune).
- The photo side is the photo's edge map only. ``edges``: ``released`` reads the data set's
  ``edges/`` (the paper's protocol), ``engine`` computes them with ``engine.edges`` (what users
  get at search time), ``auto`` takes released ones where every photo has one, ``both`` trains
  on both kinds (each photo's edge map drawn from either at every step; the engine's alone
  where the data set has no released ones), so the codes hold for edge maps unlike the app's.
  Hard negatives are mined on the first kind. Decoded once.
- Augmentation (``augment``), as the paper: a random crop of ``crop`` of the side (the paper's
  225 of 256), resized back to the input size, and a random horizontal flip, independently for
  sketches and edge maps. Evaluation uses the whole image.
- Anchors, positives and negatives go through the shared network in one forward pass, so its
  BatchNorm (EfficientNet) sees sketches and edge maps together, as at search time.
- Loss: the HOLEF triplet loss on the unit-length features (``training.losses.holef_triplet``,
  margin ``margin``: the paper gives none for unit features; 0.2 is a tenth of the distance of
  orthogonal unit vectors under W = I; lambda ``holef_lambda`` = 5e-4 as the paper), + ``w_hash``
  x the triplet loss of the relaxed codes tanh(h) per bit (margin ``margin_per_bit`` x 4 per bit,
  i.e. 8 flipped bits of a 64-bit code for 0.5), so Hamming ranking follows the feature ranking,
  + ``w_quant`` x quantisation + ``w_balance`` x bit balance.
- AdamW (the paper used SGD from Sketch-a-Net weights that cannot be had here); the pretrained
  trunk at ``backbone_lr_scale`` x lr; W (``holef_weight``) at lr without weight decay (decay
  would pull W to 0, not to I: its regulariser is the paper's L1 + Frobenius term).
- Across processes (``training.distributed``): plain backprop (W's gradient averaged with the
  rest); hard negatives are mined by rank 0 and broadcast. Each process builds its own trunk
  cache of every drawing (``cache_trunk``), as one process does.
Re-ranking by the exact HOLEF distance is the engine's (``engine.searcher.rerank_shortlist``);
``training.reranking`` measures it as part of an evaluation (``evaluate --rerank``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from typing import Any, ClassVar

import numpy as np
import torch
from torchvision.transforms import v2

from engine.errors import ConfigError
from engine.models.dssa import LITE_STAGES, DSSAModel
from training import losses
from training.arrays import PrepareProgress, released_edge_maps, sketch_batch
from training.augment import augment_sketches
from training.methods import register_procedure
from training.procedure import StepContext, TrainingProcedure, freeze_backbone_blocks
from training.progress import drain
from training.samplers import hard_negative_candidates, triplets

log = logging.getLogger(__name__)

EDGES = ("auto", "released", "engine", "both")


def crop_flip(size: int, fraction: float) -> v2.Compose:
    """Random crop of ``fraction`` of the side, resized back to ``size``, and a random flip."""
    return v2.Compose(
        [
            v2.RandomCrop(max(1, round(size * fraction))),
            v2.Resize(size, antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )


def engine_edge_maps(model: DSSAModel, photos: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """uint8 (n, P, P) edge maps of uint8 (n, P, P, 3) photos, the engine's at ``model``'s
    threshold (before they are drawn like sketches)."""
    out = []
    for i in range(0, len(photos), batch_size):
        t = torch.from_numpy(np.ascontiguousarray(photos[i : i + batch_size]))
        with torch.no_grad():
            e = model.raw_edge_maps(t.permute(0, 3, 1, 2).float().div_(255.0))
        out.append(e[:, 0].clamp(0, 1).mul(255.0).round().to(torch.uint8).numpy())
    size = photos.shape[1]
    return np.concatenate(out) if out else np.empty((0, size, size), np.uint8)


def edge_arrays(model: DSSAModel, data, source: str) -> tuple[np.ndarray, str]:
    """(uint8 (n, P, P) edge maps of ``data.photos`` for ``model``, the source used) for
    ``source`` (one kind: not ``both``)."""
    dataset = data.dataset
    if source not in EDGES or source == "both":
        kinds = tuple(e for e in EDGES if e != "both")
        raise ConfigError(f"dssa option edges must be one of {kinds}, not '{source}'.")
    if source == "auto":
        source = "released" if _has_released_edges(dataset) else "engine"
    if source == "released":
        return drain(released_edge_maps(dataset, model.photo_size)), source
    return engine_edge_maps(model, data.photos), source


def edge_kinds(model: DSSAModel, data, source: str) -> list[tuple[np.ndarray, str]]:
    """The edge maps a run trains on, as ``edge_arrays`` gives them, one entry per kind:
    ``both`` is the engine's and, where every photo has one, the released ones."""
    if source not in EDGES:
        raise ConfigError(f"dssa option edges must be one of {EDGES}, not '{source}'.")
    if source != "both":
        return [edge_arrays(model, data, source)]
    kinds = [edge_arrays(model, data, "engine")]
    if _has_released_edges(data.dataset):
        kinds.append(edge_arrays(model, data, "released"))
    return kinds


def _has_released_edges(dataset) -> bool:
    return bool(dataset.photos) and all(p.key in dataset.edges for p in dataset.photos)


@register_procedure
class DSSAProcedure(TrainingProcedure):
    method = "dssa"
    # defaults: the measured CPU recipe (QMUL-Shoe test HOLEF acc@1/acc@10 23.5%/69.6% with
    # released edges after 60 epochs at 224 px, 8 min single-threaded, against 6.1%/40.0% for
    # full fine-tuning at 128 px with one random negative, true_match 0.5, w_hash 1)
    default_options: ClassVar[dict[str, Any]] = {
        "margin": 0.2,
        "holef_lambda": 5e-4,
        "w_hash": 0.5,
        "margin_per_bit": 0.5,
        "w_quant": 0.1,
        "w_balance": 0.01,
        "backbone_lr_scale": 0.3,
        "edges": "auto",
        "augment": True,
        "crop": 225 / 256,
        "true_match": 1.0,
        "in_batch": True,
        "active_only": True,
        "cache_trunk": True,
        "train_stages": 0,
        "trunk_from": "",
    }
    # a new model's edge maps: the shipped models' threshold (engine.models.dssa, 10.); the
    # config class keeps the engine's 0.4, which checkpoints saved before the field meant
    train_defaults: ClassVar[dict[str, Any]] = {"model": {"edge_threshold": 0.2}}

    def __init__(self, model, data, config, device) -> None:
        super().__init__(model, data, config, device)
        if not isinstance(model, DSSAModel):
            raise ConfigError("The dssa procedure trains dssa models only.")
        o = self.options
        if not 0.0 <= float(o["true_match"]) <= 1.0:
            raise ConfigError("dssa option true_match must be between 0 and 1.")
        if not 0.5 <= float(o["crop"]) <= 1.0:
            raise ConfigError("dssa option crop must be between 0.5 and 1.")
        if float(o["margin"]) <= 0 or float(o["holef_lambda"]) < 0:
            raise ConfigError("dssa options: margin must be > 0 and holef_lambda >= 0.")
        hog = model.hog_fit
        if hog is not None and not int(hog.fitted) and model.fitted_codes is None:
            raise ConfigError(
                'dssa hog_weight is fitted with the codes: train with codes "fitted" (the '
                "trainer then fits both), or with hog_weight 0 and then run sketch-search "
                "fit-codes --hog-weight W on the checkpoint."
            )
        trunk = getattr(model.backbone, "trunk", None)
        if config.freeze_blocks and trunk is None:
            raise ConfigError("freeze_blocks needs the efficientnet_lite0 backbone.")
        self.frozen = freeze_backbone_blocks(trunk, config.freeze_blocks) if trunk else []
        kinds = edge_kinds(model, data, str(o["edges"]))
        self.edge_names = [source for _, source in kinds]
        # every kind's canonical maps (``edges``: the first, which hard negatives are mined on)
        self.edge_kinds = [model.canonical_edges(raw) for raw, _ in kinds]
        log.info(
            "DSSA trains on %s edge maps of %d photos",
            " and ".join(self.edge_names),
            len(self.edges),
        )
        self.cache: dict[str, torch.Tensor] | None = None
        self.cached_stages = LITE_STAGES
        if o["cache_trunk"] and trunk is None:
            log.info("cache_trunk applies to the pretrained backbone only; training it all.")
        elif o["cache_trunk"]:
            trained = o["train_stages"]
            if not isinstance(trained, int) or not 0 <= trained <= len(trunk.blocks):
                raise ConfigError(
                    f"dssa train_stages must be a whole number from 0 to {len(trunk.blocks)}."
                )
            self.cached_stages = len(trunk.blocks) - trained
            self.frozen = freeze_backbone_blocks(trunk, self.cached_stages)
            self.cache = {}  # filled by prepare, once the trunk's weights are final
        self.transform = crop_flip(model.config.image_size, float(o["crop"]))
        photo_index = {p.key: i for i, p in enumerate(data.dataset.photos)}
        self.annotated: dict[int, list[tuple[int, int]]] = {}
        for i, s in enumerate(data.dataset.sketches):
            named = data.dataset.triplets.get(s.key, ())
            pairs = [(photo_index.get(a), photo_index.get(b)) for a, b in named]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if pairs:
                self.annotated[i] = pairs
        self.negatives: dict[int, list[int]] = {}

    @property
    def edges(self) -> np.ndarray:
        """The canonical edge maps of the first kind (the engine's with ``both``)."""
        return self.edge_kinds[0]

    # ------------------------------------------------------------------ a new model's start
    def start_new_model(self) -> None:
        """The trunk from the ``trunk_from`` anchor checkpoint's sketch encoder: an
        EfficientNet-Lite0 trained on sketches, the part the paper pre-trains on sketch and
        edge-map classification (see docstring)."""
        trunk = getattr(self.model.backbone, "trunk", None)
        if trunk is not None and self.load_sketch_encoder(trunk, "trunk_from"):
            log.info(
                "DSSA's trunk starts from the sketch encoder of %s", self.options["trunk_from"]
            )

    def prepare(self, cancel: threading.Event) -> Generator[PrepareProgress, None, None]:
        """The frozen trunk's maps of every drawing and, with ``augment``, its mirror image
        (``cache_trunk``)."""
        if self.cache is None:
            return
        self.cache["sketch"] = yield from self._trunk_cache(self.data.sketches, "sketch", cancel)
        views = []
        for edges, source in zip(self.edge_kinds, self.edge_names, strict=True):
            views.append((yield from self._trunk_cache(edges, f"{source} edge map", cancel)))
        self.cache["edge"] = torch.cat(views)  # a random view: either kind, either mirror

    # ------------------------------------------------------------------ optimisers and state
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        model = self.model
        pretrained = model.config.backbone == "efficientnet_lite0" and model.config.pretrained
        trunk = getattr(model.backbone, "trunk", None)
        trunks = [trunk] if pretrained and trunk is not None else []
        holef = [model.holef_weight] if model.holef_weight is not None else []
        return self.adamw_with_slow_trunk(trunks, no_decay=holef)  # W is regularised toward I

    def extra_state(self) -> dict[str, Any]:
        return {"negatives": {str(k): v for k, v in self.negatives.items()}}

    def load_extra_state(self, state) -> None:
        self.negatives = {int(k): list(v) for k, v in state.get("negatives", {}).items()}

    # ------------------------------------------------------------------ batches
    def epoch_batches(self, epoch: int, generator: torch.Generator) -> list[Any]:
        data, size = self.data, self.config.batch_size
        n_photos, negatives = len(data.photos), self.negatives or None
        annotated = triplets(data.sketch_photo, n_photos, generator, self.annotated, negatives)
        true = triplets(data.sketch_photo, n_photos, generator, None, negatives)
        own = {s: (s, p, n) for s, p, n in true}
        pick = torch.rand(len(annotated), generator=generator) < float(self.options["true_match"])
        rows = [own[r[0]] if t else r for r, t in zip(annotated, pick.tolist(), strict=True)]
        batches = [tuple(zip(*rows[i : i + size], strict=True)) for i in range(0, len(rows), size)]
        batches = [tuple(list(part) for part in b) for b in batches if len(b[0]) >= 2]
        steps = self.config.max_steps_per_epoch
        return batches[:steps] if steps else batches

    def on_epoch_start(self, epoch: int) -> None:
        if self.config.hard_negatives and epoch > 0:
            if self.dist.is_main:  # mined once, by rank 0, and broadcast
                s = self._network_features(self.data.sketches)
                p = self._network_features(self.edges)
                self.negatives = hard_negative_candidates(s, p, self.data.sketch_photo)
            self.negatives = self.dist.broadcast_object(self.negatives)

    @torch.no_grad()
    def _network_features(self, drawings: np.ndarray) -> np.ndarray:
        """The network's features (no HOG term) of uint8 drawings: the training sketches or
        the (already canonical) training edge maps."""
        batch = sketch_batch(drawings, self.device)
        return self.model._run(lambda: self.model.features(batch))

    def _trunk_cache(self, arrays: np.ndarray, what: str, cancel) -> Generator:
        """(views, n, C, h, w) frozen-trunk maps of uint8 (n, S, S) drawings; views: the
        drawing and, with ``augment``, its mirror image."""
        model, views = self.model, []
        stages, device = self.cached_stages, self.device
        flips = (False, True) if self.options["augment"] else (False,)
        model.eval()  # the trainer puts it back in training mode before the first step
        for flip in flips:
            maps = yield from self.forward_rows(
                lambda batch, flip=flip: model.trunk_maps(batch.flip(3) if flip else batch, stages),
                arrays,
                lambda a: sketch_batch(a, device),
                f"{what} trunk maps{' (mirrored)' if flip else ''}",
                cancel,
                32,
            )
            views.append(maps.cpu())
        return torch.stack(views)

    def _cached(self, kind: str, rows: list[int]) -> torch.Tensor:
        """Cached maps of ``rows``, each from a random view (plain or mirrored; for edge maps
        of either kind with ``edges`` \"both\")."""
        cache = self.cache[kind]
        view = torch.randint(len(cache), (len(rows),))
        return cache[view, torch.as_tensor(rows)].to(self.device)

    # ------------------------------------------------------------------ step
    def _images(self, arrays: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(arrays))
        if self.options["augment"]:
            return augment_sketches(batch, self.transform)
        return sketch_batch(batch.numpy())

    def step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        o, model = self.options, self.model
        s_idx, pos, neg = batch
        n = len(s_idx)
        photo_ids = list(pos) if o["in_batch"] else list(pos) + list(neg)
        with ctx.autocast():
            if self.cache is not None:
                maps = torch.cat(
                    [self._cached("sketch", list(s_idx)), self._cached("edge", photo_ids)]
                )
                f = model.head_features(maps, self.cached_stages)
            else:
                sketches = self._images(self.data.sketches[np.asarray(s_idx)])
                kind = torch.randint(len(self.edge_kinds), (len(photo_ids),)).tolist()
                rows = [self.edge_kinds[k][i] for k, i in zip(kind, photo_ids, strict=True)]
                edges = self._images(np.stack(rows))
                f = model.features(torch.cat([sketches, edges]).to(self.device))
            h = model.hash(f)
        f, u = f.float(), torch.tanh(h.float())
        w = model.holef_weight
        bits = model.bits
        margin, lam = float(o["margin"]), float(o["holef_lambda"])
        hash_margin = 4.0 * o["margin_per_bit"] * bits
        if o["in_batch"]:
            photos = torch.as_tensor(photo_ids)
            own_photo = torch.as_tensor(self.data.sketch_photo[np.asarray(s_idx)])
            # neither the positive nor the sketch's own photo (annotated rows) is a negative
            same = (photos[None, :] == torch.as_tensor(list(pos))[:, None]) | (
                photos[None, :] == own_photo[:, None]
            )
            own = torch.arange(n)
            active = bool(o["active_only"])
            holef = losses.holef_triplet_in_batch(f[:n], f[n:], own, same, w, margin, lam, active)
            hashed = losses.holef_triplet_in_batch(
                u[:n], u[n:], own, same, None, hash_margin, active=active
            )
        else:
            holef = losses.holef_triplet(f[:n], f[n : 2 * n], f[2 * n :], w, margin, lam)
            hashed = losses.triplet(u[:n], u[n : 2 * n], u[2 * n :], hash_margin)
        terms = {
            "holef": holef,
            "hash": hashed / bits,
            "quant": losses.quantization(u),
            "balance": losses.bit_balance(u),
        }
        weights = {"holef": 1.0, "hash": o["w_hash"]}
        weights |= {"quant": o["w_quant"], "balance": o["w_balance"]}
        total = sum(weights[k] * v for k, v in terms.items())
        ctx.update(total)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["total"] = float(total.detach())
        return out
