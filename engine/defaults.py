"""Defaults the app and the command line share, in a module that imports nothing, so the app's
window (which shows them) is built before torch, timm or faiss are imported. The modules that
use them re-export them (``engine.searcher.DEFAULT_EXPAND``)."""

# Neighbours voting on the query code by default (app and CLI; 0: off). 10, measured with the
# default model (issue 16): classes held out of training 0.375 -> 0.442 mAP, their QuickDraw
# doodles 0.291 -> 0.357; the Sketchy test split, about 5 photos a class, 0.400 -> 0.393 (5: 0.407).
# Fine-grained models never expand (``SketchHashModel.expands``).
DEFAULT_EXPAND = 10
