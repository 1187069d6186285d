"""``python -m app`` opens the desktop app."""

import multiprocessing
import sys

from app.gui import run_gui

if __name__ == "__main__":  # not in a 'spawn'ed child (training), which imports this module too
    multiprocessing.freeze_support()  # frozen builds: let a child run its task, not the app
    raise SystemExit(run_gui(sys.argv))
