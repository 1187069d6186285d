"""SketchSearch engine: preprocessing, models, binary codes, catalog, index, indexer, searcher.

The engine speaks numpy arrays and PIL images at its boundary and tensors inside. It imports
neither the training package nor Qt.
"""

__version__ = "0.1.0"
