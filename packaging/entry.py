"""The frozen program's entry point: the same ``main`` as the ``sketch-search`` command.

``app.cli.main`` calls ``multiprocessing.freeze_support()`` before anything else, so a
``spawn``ed child of the frozen program (the app's training process, multiprocessing's resource
tracker) runs its task instead of opening a second window.
"""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
