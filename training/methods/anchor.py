"""Training procedure of the ``anchor`` method (engine.models.anchor): only the sketch side learns.

The photo encoder is ImageNet's, frozen; the sketch encoder learns to land where the photos of
its subject are in that photo space. Choices (measured on the class-disjoint validation protocol,
``evaluate --protocol unseen20``; DEVELOPERS.md has the figures):
- Targets, computed once before the first step (``prepare``): the frozen pooled features of
  every training photo, centred by their mean and L2-normalised; a class prototype is the
  normalised mean of its photos' targets.
- Loss on the sketch's raw output z (the centred photo space; the head's bias starts at minus
  the photo mean, so z starts centred too), with cosine similarities at temperature ``tau``:
  ``w_class`` x InfoNCE against every class prototype (the sketch's class the positive);
  ``w_instance`` x InfoNCE against the batch's own photos, for sketches drawn of a photo (the
  sketch's photo the positive, the other sketches' photos the negatives); ``w_imagenet`` x the
  cross-entropy of the frozen ImageNet classifier on z + the photo mean, for sketches whose
  class is one of ImageNet's 1000 (``training.imagenet``): ImageNet's own class directions tie
  the sketch space to the photo space beyond the training classes, and it is the only loss for
  doodles of classes without photos (``doodle_classes="all"``).
- Batches: ``batch_size`` sketches drawn at random, each source (the main data set, every extra
  folder, the doodles) equally often (``balance="source"``, so PACS's 3000 sketches of 6 classes
  do not swamp the rest), or every class equally often (``"class"``). An epoch is one pass
  over as many sketches as the data holds. Sketch augmentation as ``training.augment``.
- The sketch encoder's lower ``freeze_blocks`` stages stay frozen (ImageNet's); AdamW over the
  rest and the head, the trunk at ``backbone_lr_scale`` x lr.
- Codes: the trainer fits the model's PCA + ITQ projection on the training data after each epoch
  (``engine.models.fitted``), as for any ``codes="fitted"`` model.
- Across processes (``training.distributed``): each process computes the targets of its own
  share of the photos and all of them are gathered (every process holds every target); the
  sketch side's gradients are averaged; the trainer's code fit runs on rank 0 and is broadcast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import ConfigError
from engine.models.backbones import imagenet_classifier
from engine.models.base import photo_tensor
from training.arrays import PrepareProgress
from training.augment import augment_sketches, sketch_transform
from training.imagenet import imagenet_index
from training.methods import register_procedure
from training.procedure import StepContext, TrainingProcedure, freeze_backbone_blocks

log = logging.getLogger(__name__)

BALANCES = ("source", "class")
TARGET_BATCH = 32


@register_procedure
class AnchorProcedure(TrainingProcedure):
    method = "anchor"
    photoless_classes = True
    default_options: ClassVar[dict[str, Any]] = {
        "tau": 0.07,
        "w_class": 1.0,
        "w_instance": 0.5,
        "w_imagenet": 1.0,
        "balance": "source",
        "backbone_lr_scale": 1.0,
        "augment": True,
    }
    train_defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 48,
        "lr": 3e-4,
        "weight_decay": 0.05,
        "schedule": "cosine",
        "warmup_steps": 50,
        "freeze_blocks": 3,
    }

    def __init__(self, model, data, config, device) -> None:
        super().__init__(model, data, config, device)
        o = self.options
        if o["balance"] not in BALANCES:
            raise ConfigError(f"anchor balance must be one of {BALANCES}.")
        if not 0 < float(o["tau"]) <= 1:
            raise ConfigError("anchor tau must be in (0, 1].")
        self.frozen = freeze_backbone_blocks(model.sketch_trunk, config.freeze_blocks)
        self.transform = sketch_transform(model.sketch_size)
        classes = data.dataset.classes
        self.imagenet_label = np.array([imagenet_index(c) for c in classes], np.int64)
        has_photo = np.zeros(len(classes), bool)
        has_photo[np.unique(data.photo_labels)] = True
        self.has_photo = has_photo
        usable = has_photo[data.sketch_labels] | (self.imagenet_label[data.sketch_labels] >= 0)
        self.usable = np.flatnonzero(usable)
        if not len(self.usable):
            raise ConfigError("No training sketch has a class with photos or an ImageNet class.")
        if (~usable).any():
            log.info(
                "anchor: %d sketch(es) of classes without photos or ImageNet class left out",
                int((~usable).sum()),
            )
        self.classifier_weight, self.classifier_bias = (t.to(device) for t in imagenet_classifier())
        self.targets: torch.Tensor | None = None  # (n photos, 1280) centred, normalised
        self.prototypes: torch.Tensor | None = None  # (classes, 1280), zero rows: no photos
        self.photo_mean: torch.Tensor | None = None

    # ------------------------------------------------------------------ targets
    def prepare(self, cancel: threading.Event) -> Generator[PrepareProgress, None, None]:
        """The frozen photo features of every training photo, their mean and the prototypes."""
        model, device = self.model, self.device
        feats = yield from self.forward_rows(
            model.photo_forward,
            self.data.photos,
            lambda photos: photo_tensor(photos, model.photo_size, device),
            "photo targets",
            cancel,
            TARGET_BATCH,
        )
        self.photo_mean = feats.mean(0)
        self.targets = F.normalize(feats - self.photo_mean, dim=1)
        labels = torch.from_numpy(self.data.photo_labels).to(self.device)
        sums = torch.zeros(len(self.has_photo), feats.shape[1], device=self.device)
        sums.index_add_(0, labels, self.targets)
        self.prototypes = F.normalize(sums, dim=1)
        head = self.model.sketch_head
        fresh = not head.bias.any() and torch.equal(head.weight, torch.eye(len(head.weight)))
        if fresh:  # a new model (not a fine-tune or resume): start in the centred photo space
            with torch.no_grad():
                head.bias.copy_(-self.photo_mean)

    # ------------------------------------------------------------------ optimisers
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.adamw_with_slow_trunk([self.model.sketch_trunk])

    # ------------------------------------------------------------------ batches
    def epoch_batches(self, epoch: int, generator: torch.Generator) -> list[list[int]]:
        pool = self.usable
        if self.options["balance"] == "source":
            keys = self.data.sketch_source[pool]
        else:
            keys = self.data.sketch_labels[pool]
        groups = [pool[keys == k] for k in np.unique(keys)]
        size = self.config.batch_size
        steps = max(1, -(-len(pool) // size))
        if self.config.max_steps_per_epoch:
            steps = min(steps, self.config.max_steps_per_epoch)
        which = torch.randint(len(groups), (steps * size,), generator=generator).numpy()
        pick = torch.rand(steps * size, generator=generator).numpy()
        rows = [int(groups[g][int(u * len(groups[g]))]) for g, u in zip(which, pick, strict=True)]
        return [rows[i : i + size] for i in range(0, len(rows), size)]

    # ------------------------------------------------------------------ step
    def step(self, batch: list[int], ctx: StepContext) -> dict[str, float]:
        o, idx = self.options, np.asarray(batch)
        raw = torch.from_numpy(self.data.sketches[idx])
        if o["augment"]:
            x = augment_sketches(raw, self.transform)
        else:
            x = raw[:, None].float().div_(255.0)
        with ctx.autocast():
            z = self.model.sketch_forward(x.to(self.device)).float()
        zn = F.normalize(z, dim=1)
        tau = float(o["tau"])
        labels = self.data.sketch_labels[idx]
        terms: dict[str, torch.Tensor] = {}
        zero = z.sum() * 0.0
        with_photo = self.has_photo[labels]
        if with_photo.any():
            y = torch.from_numpy(labels[with_photo]).to(self.device)
            logits = zn[torch.from_numpy(with_photo)] @ self.prototypes.T / tau
            terms["class"] = F.cross_entropy(logits, y)
        else:
            terms["class"] = zero
        own = self.data.sketch_photo[idx]
        paired = own >= 0
        if paired.sum() > 1:
            targets = self.targets[torch.from_numpy(own[paired]).to(self.device)]
            logits = zn[torch.from_numpy(paired)] @ targets.T / tau
            terms["instance"] = F.cross_entropy(logits, torch.arange(len(targets), device=z.device))
        else:
            terms["instance"] = zero
        inet = self.imagenet_label[labels]
        named = inet >= 0
        if named.any():
            logits = (z[torch.from_numpy(named)] + self.photo_mean) @ self.classifier_weight.T
            logits = logits + self.classifier_bias
            terms["imagenet"] = F.cross_entropy(logits, torch.from_numpy(inet[named]).to(z.device))
        else:
            terms["imagenet"] = zero
        weights = {"class": o["w_class"], "instance": o["w_instance"], "imagenet": o["w_imagenet"]}
        total = sum(float(weights[k]) * v for k, v in terms.items())
        ctx.update(total)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["total"] = float(total.detach())
        return out
