"""Defaults the app and the command line share, in a module that imports nothing, so the app's
window (which shows them) is built before torch, timm or faiss are imported. The modules that
use them re-export them (``engine.searcher.DEFAULT_EXPAND``)."""

DEFAULT_EXPAND = 0  # neighbours voting on the query code by default (app and CLI); 0: off
