"""Training procedure of GDH (engine.models.gdh): Zhang et al., ECCV 2018, eq. 7 and Algorithm 1.

Each step (one batch of sketches S and photos I, paired row by row):
1. generators and hashing net, discriminators held fixed ("main" optimiser):
   L = w_gan (L_gan(G_I, D_I) + L_gan(G_S, D_S)) + 10 L_cyc + L_sem + alpha L_q + beta L_c
       + lambda L_tri,
   with u_I = tanh(H(I * mask_GS(I))) and u_S = tanh(H(G_I(S))) computed in ONE pass of H, so its
   BatchNorm sees real and generated photos together, as its running statistics will at search;
2. discriminators ("disc" optimiser) on the real images and the detached generated ones.
The terms are in ``training.gdh_nets``. Between epochs (``on_epoch_end``) the discrete step of
the semantic factorisation runs with ``training.discrete``: D step (eq. 9) = ``d_step`` on the
codes of both domains with their labels, then the B steps (eqs. 12, 13) = ``b_step`` per domain,
B_I = sgn(Y_I D + mu F_I), B_S = sgn(Y_S D + mu F_S), F the latest u of each training photo /
sketch (kept from the steps, so no extra pass over the data). Where GDH differs: GDH's D maps
the labels to the codes as here (no word vectors); the coupling mu || B - F ||^2 is its L_sem's
network term, which the step minimises as ``semantic_regression``.

Choices where the paper is vague, and why:
- how B starts (the paper does not say): ``init_codes="features"`` (default) runs the untrained
  model over the training set before the first step and starts from a few D/B alternations
  (``training.discrete.alternate``) on its outputs, so the class codes begin where the
  pretrained features put the classes; ``"random"`` starts from sgn(Y D0), D0 a random +-1 code
  per class (seeded). The outputs are centred per bit first: an untrained head's outputs share a
  large common part, and their plain signs gave nearly constant codes (mean |bit mean| 0.87,
  class codes 6.6 bits apart on average). Measured on the 104 Sketchy classes at 64 px: from
  random codes H stayed near the trivial u = 0 (L_sem 2.10 -> 1.98 in 90 steps at H lr 1e-3),
  each bit being an arbitrary split of the classes; with 8 classes it fitted them in 15 steps;
- pairing (the expanded set S-hat): the class-balanced sampler draws ``per_class`` sketches and
  photos of each class of a batch, so each sketch is paired with a photo of its class, sketches
  repeating within their class when a class has fewer sketches than photos;
- weights: cycle 10, alpha = beta = 1e-5 and lambda = 0 (category level) / 1 (fine-grained) as
  the paper. Since every term here is a per-element mean (``training.gdh_nets``), alpha and beta
  this small leave L_q and L_c nearly inert; they are options (``alpha``, ``beta``);
- optimisers: Adam with betas (0.5, 0.999) (the usual GAN setting; the paper gives only lr 2e-4
  and batch 32: pass ``--lr 2e-4 --batch-size 32 --schedule constant``), no weight decay; H's
  learning rate is x0.1 from epoch round(``hash_drop_at`` x epochs) on (paper: after 25 of 30);
  ``hash_lr_scale`` (default 1, the paper) gives H its own lr, because at 64 px on a CPU budget
  H learnt its class codes very slowly at 2e-4 (L_sem 2.19 -> 1.98 in 3 epochs of Sketchy);
- fine-grained data (every photo its own class): no D/B steps (the paper's fine-grained setting);
  the batch is (sketch, its photo, another photo); L_c pairs the sketch with its own photo and
  the triplet loss ranks them (human triplets where the data set has them);
- no augmentation (the paper mentions none); the hashing net reads 3-channel generated photos.

CPU configuration (what a 2-core CPU trains in under an hour; the paper's is a config away:
``image_size`` 256, ``gen_channels`` 32, ``gi_blocks`` 9, ``gs_blocks`` 6, ``disc_channels`` 64):
``{"model": {"image_size": 128, "gen_channels": 8, "gi_blocks": 3, "gs_blocks": 2, "skip":
true}, "options": {"disc_channels": 16, "hash_lr_scale": 5.0}}``, Adam lr 2e-4, batch 32,
constant schedule. It changes: half the resolution, generators at a quarter of the paper's width
with a third of its ResBlocks, a narrower discriminator, H's lr x5, and the residual generators
(``engine.models.gdh``, ``skip``) that start as the identity. Measured on 20 Sketchy classes,
96 steps (8 epochs), test split, binary mAP (random 0.098, HOG 0.115): 64 px 0.112 without
skip, 0.316 with; 128 px 0.248 without, 0.545 with. Without the skip H must learn to hash
what a random generator makes of a sketch, and at this budget it did not.

Across processes (``training.distributed``): each step's u of the photos and sketches of every
process's batch are all-gathered and written into F in the order of the batches in the epoch, so
every process holds the F one process would have; the pass over the training set that starts B
(``init_codes="features"``) is split between the processes and its outputs gathered; the D and
B steps then run on every process on the same inputs, and rank 0's D and B are broadcast.

Ablations (Table 5): ``use_unification`` (L_c), ``use_quantisation`` (L_q), ``use_gan`` (no
adversarial terms; the discriminators are then not trained) and the model's ``attention=False``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from engine.errors import ConfigError
from training import gdh_nets, losses
from training.arrays import photo_batch, sketch_batch
from training.data import FINE_GRAINED
from training.discrete import alternate, b_step, d_step
from training.methods import register_procedure
from training.procedure import StepContext, TrainingProcedure

log = logging.getLogger(__name__)


@register_procedure
class GDHProcedure(TrainingProcedure):
    method = "gdh"
    default_options: ClassVar[dict[str, Any]] = {
        "w_gan": 1.0,
        "w_cycle": 10.0,
        "w_sem": 1.0,
        "alpha": 1e-5,  # L_q
        "beta": 1e-5,  # L_c
        "lam": None,  # triplet weight; None: 0 category level, 1 fine-grained
        "mu": 1.0,  # B step coupling to the network outputs
        "init_codes": "features",  # or "random"
        "reg": 1.0,  # D step ridge
        "disc_channels": 64,
        "hash_drop_at": 25 / 30,
        "hash_lr_scale": 1.0,  # H's lr = lr x this (1: the paper's single lr)
        "use_gan": True,
        "use_quantisation": True,
        "use_unification": True,
    }

    # the paper's optimiser settings, which the Train panel pre-fills
    train_defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 32,
        "lr": 2e-4,
        "schedule": "constant",
    }

    def __init__(self, model, data, config, device) -> None:
        super().__init__(model, data, config, device)
        o = self.options
        if not 0 < float(o["hash_drop_at"]) <= 1:
            raise ConfigError("gdh hash_drop_at must be in (0, 1] (a fraction of the epochs).")
        if not 0 < float(o["hash_lr_scale"]) <= 100:
            raise ConfigError("gdh hash_lr_scale must be in (0, 100].")
        if int(o["disc_channels"]) < 4:
            raise ConfigError("gdh disc_channels must be at least 4.")
        self.fine_grained = data.dataset.layout == FINE_GRAINED
        self.lam = float(o["lam"]) if o["lam"] is not None else float(self.fine_grained)
        channels = int(o["disc_channels"])
        self.d_i = gdh_nets.Discriminator(3, channels).to(device)
        self.d_s = gdh_nets.Discriminator(1, channels).to(device)
        self.num_classes = len(data.dataset.classes)
        self.epoch = 0
        self.codes_ready = o["init_codes"] == "random" or self.fine_grained
        if o["init_codes"] not in ("features", "random"):
            raise ConfigError("gdh init_codes must be 'features' or 'random'.")
        bits = model.bits
        self.annotated = self._annotated() if self.fine_grained else {}
        self.feat_p = torch.zeros(len(data.photos), bits)
        self.feat_s = torch.zeros(len(data.sketches), bits)
        g = torch.Generator().manual_seed(config.seed)
        d0 = torch.randint(0, 2, (self.num_classes, bits), generator=g).float() * 2 - 1
        self.d = d0
        self.b_p = b_step(d0, torch.from_numpy(data.photo_labels), None, 0.0)
        self.b_s = b_step(d0, torch.from_numpy(data.sketch_labels), None, 0.0)

    def _annotated(self) -> dict[int, list[tuple[int, int]]]:
        photo_index = {p.key: i for i, p in enumerate(self.data.dataset.photos)}
        out = {}
        for i, s in enumerate(self.data.dataset.sketches):
            pairs = [
                (photo_index.get(a), photo_index.get(b))
                for a, b in self.data.dataset.triplets.get(s.key, ())
            ]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if pairs:
                out[i] = pairs
        return out

    # ------------------------------------------------------------------ optimisers and state
    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        m, lr = self.model, self.config.lr
        generators = list(m.g_i.parameters()) + list(m.g_s.parameters())
        hashing = list(m.trunk.parameters()) + list(m.hash_layer.parameters())
        main = torch.optim.Adam(
            [
                {"params": generators, "lr": lr},
                {"params": hashing, "lr": lr * float(self.options["hash_lr_scale"])},
            ],
            lr=lr,
            betas=(0.5, 0.999),
        )
        disc = list(self.d_i.parameters()) + list(self.d_s.parameters())
        return {"main": main, "disc": torch.optim.Adam(disc, lr=lr, betas=(0.5, 0.999))}

    def training_modules(self) -> dict[str, nn.Module]:
        return {"d_i": self.d_i, "d_s": self.d_s}

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()
        state.update(
            epoch=self.epoch,
            codes_ready=self.codes_ready,
            codes={"b_p": self.b_p, "b_s": self.b_s, "d": self.d},
            features={"photos": self.feat_p, "sketches": self.feat_s},
        )
        return state

    def load_extra_state(self, state) -> None:
        super().load_extra_state(state)
        self.epoch = int(state["epoch"])
        self.codes_ready = bool(state["codes_ready"])
        self.b_p, self.b_s, self.d = (state["codes"][k] for k in ("b_p", "b_s", "d"))
        self.feat_p, self.feat_s = state["features"]["photos"], state["features"]["sketches"]

    # ------------------------------------------------------------------ batches and hooks
    def epoch_batches(self, epoch: int, generator: torch.Generator) -> list[Any]:
        if not self.fine_grained:
            return self.category_batches(generator)
        return self.triplet_batches(generator, self.annotated)

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch
        if not self.codes_ready:
            self._init_codes_from_features()

    def _init_codes_from_features(self, batch: int = 128) -> None:
        """B, D from a few D/B alternations on the current model's outputs over the training set."""
        m, data, o = self.model, self.data, self.options

        def outputs(embed, arrays) -> torch.Tensor:
            rows = self.dist.chunk(len(arrays))  # this process's rows, then all of them
            parts = [
                embed(arrays[i : min(i + batch, rows.stop)])
                for i in range(rows.start, rows.stop, batch)
            ]
            mine = torch.from_numpy(np.concatenate(parts)) if parts else torch.empty(0, m.bits)
            return torch.tanh(self.dist.gather_rows(mine))

        self.feat_p = outputs(partial(m.embed_photos, raw=True), data.photos)
        self.feat_s = outputs(partial(m.embed_sketches, raw=True), data.sketches)
        labels = torch.from_numpy(np.concatenate([data.photo_labels, data.sketch_labels]))
        features = torch.cat([self.feat_p, self.feat_s])
        codes, self.d = alternate(
            labels,
            features - features.mean(dim=0),  # centred: balanced bits (see docstring)
            float(o["reg"]),
            float(o["mu"]),
            num_classes=self.num_classes,
        )
        self.dist.broadcast_tensors([codes, self.d])  # rank 0's solve (docstring)
        self.b_p, self.b_s = codes[: len(data.photos)], codes[len(data.photos) :]
        self.codes_ready = True

    def hash_lr_dropped(self) -> bool:
        return self.epoch >= round(float(self.options["hash_drop_at"]) * self.config.epochs)

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        if self.fine_grained:
            return {}
        o = self.options
        yp = torch.from_numpy(self.data.photo_labels)
        ys = torch.from_numpy(self.data.sketch_labels)
        old = torch.cat([self.b_p, self.b_s])
        self.d = d_step(old, torch.cat([yp, ys]), float(o["reg"]), num_classes=self.num_classes)
        self.b_p = b_step(self.d, yp, self.feat_p, float(o["mu"]))
        self.b_s = b_step(self.d, ys, self.feat_s, float(o["mu"]))
        self.dist.broadcast_tensors([self.d, self.b_p, self.b_s])  # rank 0's solve (docstring)
        changed = float((torch.cat([self.b_p, self.b_s]) != old).float().mean())
        return {"codes_changed": changed}

    # ------------------------------------------------------------------ step
    def step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        o, m = self.options, self.model
        if self.fine_grained:
            s_idx, pos, neg = batch
            p_idx = list(pos) + list(neg)
        else:
            s_idx, p_idx = batch
        n = len(s_idx)
        s = sketch_batch(self.data.sketches[np.asarray(s_idx)], self.device)
        p = photo_batch(self.data.photos[np.asarray(p_idx)], self.device)
        p_pair = p[:n]  # the photos paired with the sketches (all of them at category level)
        use_gan = bool(o["use_gan"]) and float(o["w_gan"]) > 0
        for d in (self.d_i, self.d_s):
            d.requires_grad_(False)
        with ctx.autocast():
            fake_p, _ = m.g_i(s)
            fake_s, mask = m.g_s(p_pair)
            rec_s, _ = m.g_s(fake_p)
            rec_p, _ = m.g_i(fake_s)
            masked = p * gdh_nets.upsample_mask(m.g_s.features(p)[1] if n < len(p) else mask, p)
            u = torch.tanh(m.hash(torch.cat([masked, fake_p])).float())
        u_p, u_g = u[: len(p)], u[len(p) :]
        terms: dict[str, torch.Tensor] = {
            "cycle": gdh_nets.cycle(s, rec_s.float()) + gdh_nets.cycle(p_pair, rec_p.float()),
            "quant": gdh_nets.quantisation(u),
            "unify": gdh_nets.unification(u_p[:n], u_g),
        }
        if use_gan:
            terms["gan"] = gdh_nets.lsgan_generator(
                self.d_i(fake_p).float()
            ) + gdh_nets.lsgan_generator(self.d_s(fake_s).float())
        if not self.fine_grained:
            b_p = self.b_p[torch.as_tensor(p_idx)].to(self.device)
            b_s = self.b_s[torch.as_tensor(s_idx)].to(self.device)
            terms["sem"] = gdh_nets.semantic_regression(u_p, b_p) + gdh_nets.semantic_regression(
                u_g, b_s
            )
            # every process's rows, in the order of their batches (the docstring)
            for rows, values in self.dist.gather_indexed(torch.as_tensor(p_idx), u_p.detach()):
                self.feat_p[rows] = values.cpu()
            for rows, values in self.dist.gather_indexed(torch.as_tensor(s_idx), u_g.detach()):
                self.feat_s[rows] = values.cpu()
        if self.lam > 0 and self.fine_grained:
            terms["triplet"] = losses.triplet(u_g, u_p[:n], u_p[n:], m.bits / 2)
        weights = {
            "gan": float(o["w_gan"]),
            "cycle": float(o["w_cycle"]),
            "sem": float(o["w_sem"]),
            "quant": float(o["alpha"]) if o["use_quantisation"] else 0.0,
            "unify": float(o["beta"]) if o["use_unification"] else 0.0,
            "triplet": self.lam,
        }
        total = sum(weights[k] * v for k, v in terms.items())
        hash_group = ctx.optimizers["main"].param_groups[1]
        if self.hash_lr_dropped():  # the scheduler recomputes lr from its base after the step
            hash_group["lr"] *= 0.1
        ctx.update(total, "main")
        out = {k: float(v.detach()) for k, v in terms.items()}
        if use_gan:
            for d in (self.d_i, self.d_s):
                d.requires_grad_(True)
            with ctx.autocast():
                d_loss = gdh_nets.lsgan_discriminator(
                    self.d_i(p_pair).float(), self.d_i(fake_p.detach()).float()
                ) + gdh_nets.lsgan_discriminator(
                    self.d_s(s).float(), self.d_s(fake_s.detach()).float()
                )
            ctx.update(d_loss, "disc")
            out["disc"] = float(d_loss.detach())
        out["total"] = float(total.detach())
        return out
