"""Training procedure of the ``baseline`` method (engine.models.baseline).

Not a paper method; choices, so that a few CPU epochs already give a useful model:
- One batch = sketches and photos of the same ``batch_size / per_class`` classes (class-balanced
  sampler), both through the shared trunk in ONE forward pass, so the hash head's BatchNorm sees
  both domains at once, as its running statistics will at search time.
- Relaxed codes u = tanh(output). Category-level loss:
  ``w_class`` * (CE(classifier(u_sketch)) + CE(classifier(u_photo))) / 2 with one linear classifier
  shared by both domains (it aligns the domains class by class), + ``w_pair`` * the cross-domain
  DPSH pairwise likelihood (sketch x photo, same class = similar), + ``w_quant`` * quantisation
  (|u| -> 1) + ``w_balance`` * bit balance.
- Fine-grained data (every photo its own class): triplet loss (sketch, its photo, another photo;
  human triplets and hard negatives where available) with margin ``margin_per_bit * bits`` in
  squared Euclidean distance of u (for +-1 codes, 4 x Hamming), + quantisation + bit balance.
- AdamW; the pretrained trunk learns at ``backbone_lr_scale`` x lr; ``freeze_blocks`` stages of it
  (and their BatchNorm statistics) stay frozen.
- Across processes (``training.distributed``): plain backprop, and the hard negatives
  (``hard_negatives``, fine-grained) are mined by rank 0 and broadcast.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import losses
from training.augment import PairBatches
from training.data import FINE_GRAINED
from training.methods import register_procedure
from training.procedure import StepContext, TrainingProcedure, freeze_backbone_blocks
from training.samplers import hard_negative_candidates

log = logging.getLogger(__name__)


@register_procedure
class BaselineProcedure(TrainingProcedure):
    method = "baseline"
    default_options: ClassVar[dict[str, Any]] = {
        "w_class": 1.0,
        "w_pair": 1.0,
        "w_quant": 0.1,
        "w_balance": 0.01,
        "margin_per_bit": 0.5,
        "backbone_lr_scale": 0.1,
        "augment": True,
    }

    def __init__(self, model, data, config, device) -> None:
        super().__init__(model, data, config, device)
        self.fine_grained = data.dataset.layout == FINE_GRAINED
        self.classifier = nn.Linear(model.bits, len(data.dataset.classes)).to(device)
        self.frozen = freeze_backbone_blocks(model.trunk, config.freeze_blocks)
        size = model.config.image_size
        self.pairs = PairBatches(size, augment=self.options["augment"])
        self.negatives: dict[int, list[int]] = {}
        annotated: dict[int, list[tuple[int, int]]] = {}
        if self.fine_grained:
            photo_index = {p.key: i for i, p in enumerate(data.dataset.photos)}
            for i, s in enumerate(data.dataset.sketches):
                pairs = data.dataset.triplets.get(s.key, ())
                pairs = [(photo_index.get(a), photo_index.get(b)) for a, b in pairs]
                pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
                if pairs:
                    annotated[i] = pairs
        self.annotated = annotated

    # ------------------------------------------------------------------ optimisers and modules
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.adamw_with_slow_trunk(
            [self.model.trunk], extra=list(self.classifier.parameters())
        )

    def training_modules(self) -> dict[str, nn.Module]:
        return {"classifier": self.classifier}

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()
        state["negatives"] = {str(k): v for k, v in self.negatives.items()}
        return state

    def load_extra_state(self, state) -> None:
        super().load_extra_state(state)
        self.negatives = {int(k): list(v) for k, v in state.get("negatives", {}).items()}

    # ------------------------------------------------------------------ batches
    def epoch_batches(self, epoch: int, generator: torch.Generator) -> list[Any]:
        if not self.fine_grained:
            return self.category_batches(generator)
        return self.triplet_batches(generator, self.annotated, self.negatives or None)

    def on_epoch_start(self, epoch: int) -> None:
        if self.fine_grained and self.config.hard_negatives and epoch > 0:
            if self.dist.is_main:
                s = self.model.embed_sketches(self.data.sketches, raw=True)
                p = self.model.embed_photos(self.data.photos, raw=True)
                self.negatives = hard_negative_candidates(
                    np.tanh(s), np.tanh(p), self.data.sketch_photo
                )
            self.negatives = self.dist.broadcast_object(self.negatives)

    # ------------------------------------------------------------------ step
    def _inputs(self, sketch_idx, photo_idx) -> torch.Tensor:
        s, p = self.pairs(self.data.sketches, self.data.photos, sketch_idx, photo_idx)
        return torch.cat([s.expand(-1, 3, -1, -1), p]).to(self.device)

    def _codes(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.model.hash_head(self.model.features(images)).float())

    def step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        o = self.options
        if self.fine_grained:
            s_idx, pos, neg = batch
            with ctx.autocast():
                u = self._codes(self._inputs(s_idx, list(pos) + list(neg)))
            n = len(s_idx)
            us, up, un = u[:n], u[n : 2 * n], u[2 * n :]
            terms = {"triplet": losses.triplet(us, up, un, o["margin_per_bit"] * self.model.bits)}
        else:
            s_idx, p_idx = batch
            with ctx.autocast():
                u = self._codes(self._inputs(s_idx, p_idx))
            n = len(s_idx)
            us, up = u[:n], u[n:]
            ys = torch.from_numpy(self.data.sketch_labels[np.asarray(s_idx)]).to(self.device)
            yp = torch.from_numpy(self.data.photo_labels[np.asarray(p_idx)]).to(self.device)
            logits = self.classifier(u)
            terms = {
                "class": 0.5 * (F.cross_entropy(logits[:n], ys) + F.cross_entropy(logits[n:], yp)),
                "pair": losses.pairwise_likelihood(us, up, losses.same_class(ys, yp)),
            }
        terms["quant"] = losses.quantization(u)
        terms["balance"] = losses.bit_balance(u)
        weights = {
            "class": o["w_class"],
            "pair": o["w_pair"],
            "triplet": 1.0,
            "quant": o["w_quant"],
            "balance": o["w_balance"],
        }
        total = sum(weights[k] * v for k, v in terms.items())
        ctx.update(total)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["total"] = float(total.detach())
        return out
