"""Defaults the app and the command line share, in a module that imports nothing, so the app's
window (which shows them) is built before torch, timm or faiss are imported. The modules that
use them re-export them (``engine.searcher.DEFAULT_EXPAND``)."""

# Query expansion over this many nearest photos by default (app and CLI; 0: off). With the
# asymmetric ranking of category-level models (``engine.asymmetric``) 5, measured with the default
# model's recipe trained without the unseen20 classes (64 bits, mAP@all; issue 16): held-out
# classes 0.375 Hamming -> 0.426 asymmetric -> 0.499 expanded over 5 (10: 0.501), their QuickDraw
# doodles 0.291 -> 0.340 -> 0.409 (10: 0.410); with the shipped model on the Sketchy test split,
# about 5 photos a class, 0.400 -> 0.440 -> 0.456 (10: 0.436). Fine-grained models never expand
# (``SketchHashModel.expands``).
DEFAULT_EXPAND = 5
