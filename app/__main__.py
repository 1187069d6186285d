"""``python -m app`` opens the desktop app."""

import sys

from app.gui import run_gui

raise SystemExit(run_gui(sys.argv))
