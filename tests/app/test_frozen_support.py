"""What the packaged (PyInstaller) program relies on, checked on the source tree: the app logs
its ready line once the main window is shown, then a line when the default model is active (the
smoke test of the frozen build waits for both)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from app.gui import READY_MESSAGE
from app.gui.library.model_control import MODEL_READY_MESSAGE
from engine.model_files import DEFAULT_NAME, SHIPPED_DIR
from engine.models import read_checkpoint_info

START_TIMEOUT_S = 180


def test_app_logs_ready_once_the_window_is_shown_then_the_model(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    env["SKETCH_SEARCH_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main([]))"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        for line in proc.stdout:
            lines.append(line)
            if MODEL_READY_MESSAGE in line or time.monotonic() > deadline:
                break
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
    output = "".join(lines)
    ready = [line for line in lines if READY_MESSAGE in line]
    assert ready, f"no ready line within {START_TIMEOUT_S} s:\n{output}"
    assert "main window shown" in ready[0]
    model = [line for line in lines if MODEL_READY_MESSAGE in line]
    assert model, f"no model line within {START_TIMEOUT_S} s:\n{output}"
    assert lines.index(ready[0]) < lines.index(model[0])  # the window does not wait for the model
    shipped = read_checkpoint_info(SHIPPED_DIR / DEFAULT_NAME)
    assert f"{shipped.name} ({shipped.method}" in model[0]  # the shipped default
    assert "Traceback" not in output
    assert "faiss.loader" not in output  # its INFO chatter is silenced in the app
