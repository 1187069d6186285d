"""The first seconds of a new user: what the command line and the app do before anything heavy
is imported, what a first run creates (and does not), and where the settings go. Speed itself is
measured in ``sketch-search bench`` (app/startup_bench.py), not asserted here; these tests check
the causes: which modules a start imports, and in which order things happen."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from app.cli import EXIT_ERROR, main
from engine.catalog import SCHEMA_VERSION
from engine.errors import CheckpointError
from engine.library import Library
from engine.model_files import (
    METHODS,
    SHIPPED_DIR,
    installed_checkpoints,
    model_name,
    read_checkpoint_info,
)

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "timm", "kornia", "faiss")
HEAVY_IMPORT = re.compile(r"^import time:.*\|\s+(torch|timm|kornia|faiss)(\.|\s*$)", re.MULTILINE)


def _imports_of(argv: list[str]) -> tuple[str, set[str]]:
    """Run the CLI with ``argv`` in a fresh interpreter: its stdout and the heavy modules it
    imported."""
    code = (
        "import sys, json\n"
        "from app.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert run.returncode == 0, run.stderr
    *out, heavy = run.stdout.strip().splitlines()
    return "\n".join(out), set(json.loads(heavy))


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["models"], ["models", "--json"]])
def test_help_version_and_models_import_no_torch(argv):
    out, heavy = _imports_of(argv)
    assert heavy == set(), f"sketch-search {' '.join(argv)} imported {heavy}"
    assert out


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert capsys.readouterr().out.strip() == f"sketch-search {version}"


def test_models_lists_the_registered_methods_and_shipped_checkpoints(capsys):
    from engine.models import list_methods  # imports torch: the registry is the truth

    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["methods"] == list(METHODS) == list_methods()
    shipped = sorted(SHIPPED_DIR.glob("*.safetensors"))
    listed = [Path(c["path"]) for c in out["checkpoints"]]
    assert listed[: len(shipped)] == shipped
    assert sum(c["default"] for c in out["checkpoints"]) == (1 if shipped else 0)


def test_checkpoint_headers_read_without_torch_refuse_what_safetensors_refuses(tmp_path):
    from engine.models import load_checkpoint

    infos = installed_checkpoints()
    if not infos:
        pytest.skip("no shipped checkpoints in assets/models")
    info = infos[0]
    model = load_checkpoint(info.path)
    assert model.checkpoint_info == info and model_name(model) == info.name
    data = info.path.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "short": data[:5],
        "length": (10**12).to_bytes(8, "little") + data[8:],
        "not json": len(b"{oops").to_bytes(8, "little") + b"{oops",
        "a list": len(b"[1, 2]").to_bytes(8, "little") + b"[1, 2]",
        "one byte more": data + b"\0",
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
            read_checkpoint_info(path)


def test_one_model_name_everywhere_in_the_command_line(tmp_path, capsys):
    """``query --json`` names the model as the chooser does; its id follows."""
    from engine.sketch import Point, Stroke, save_strokes

    infos = [i for i in installed_checkpoints() if i.path.name == "default.safetensors"]
    if not infos:
        pytest.skip("no shipped default model")
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 90, 200 - 30 * i)).save(photos / f"{i}.jpg")
    library = str(tmp_path / "lib")
    assert main(["index", str(photos), "--library", library]) == 0
    sketch = save_strokes(tmp_path / "s.json", [Stroke((Point(0, 0), Point(40, 30)))])
    capsys.readouterr()
    assert main(["query", str(sketch), "--library", library, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == infos[0].name  # e.g. "baseline-64", never "default"
    assert out["model_id"] == infos[0].model_id
    assert main(["query", str(sketch), "--library", library]) == 0
    assert f"searched with {infos[0].name} ({infos[0].model_id})" in capsys.readouterr().err


def test_query_shows_a_first_line_at_once_on_a_terminal(tmp_path):
    """On a terminal, ``query`` says what it does before it imports torch; the line is erased
    before the error (or the results), so what follows reads as before."""
    sketch = tmp_path / "line.json"
    sketch.write_text("[[[0, 40, 80], [0, 30, 0]]]")  # a QuickDraw drawing
    primary, secondary = pty.openpty()
    library = str(tmp_path / "lib")
    process = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "app.cli",
            "query",
            str(sketch),
            "--library",
            library,
        ],
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        cwd=REPO,
    )
    os.close(secondary)
    chunks = []
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(primary, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(primary)
        process.wait(60)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert process.returncode == EXIT_ERROR
    status = text.index("Reading the sketch")
    assert "Loading the model" in text
    torch_import = HEAVY_IMPORT.search(text)
    first_torch = torch_import.start() if torch_import else -1
    assert first_torch < 0 or status < first_torch, "the first line came after torch was imported"
    assert first_torch > text.index("Loading the model"), "torch was imported before it said so"
    (error,) = [line for line in text.split("\n") if "error:" in line]
    # the status line was overwritten with spaces and the error starts a clean line
    assert re.search(r"\r +\rerror: No photos are indexed", error), error


def test_index_of_a_missing_folder_creates_no_library(tmp_path, capsys):
    library = tmp_path / "lib"
    assert main(["index", str(tmp_path / "typo"), "--library", str(library)]) == EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err
    assert not library.exists()


def test_a_new_library_is_created_at_the_current_schema_without_upgrading(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="engine.catalog"):
        library = Library(tmp_path / "lib")
    try:
        assert library.catalog.schema_version == SCHEMA_VERSION
    finally:
        library.close()
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "Upgrading" in m], messages
    assert len([m for m in messages if "New catalog" in m and f"schema {SCHEMA_VERSION}" in m]) == 1


def test_the_app_shows_its_window_before_importing_torch(tmp_path):
    """The window first, then the model: no torch module is imported before the app logs that
    its main window is shown (``-X importtime`` lines go to stderr as each import ends)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    env["SKETCH_SEARCH_HOME"] = str(tmp_path / "home")
    env["SKETCH_SEARCH_SETTINGS"] = str(tmp_path / "settings.ini")
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "app.cli"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    lines = []
    deadline = time.monotonic() + 300
    try:
        for line in process.stderr:
            lines.append(line)
            if "Model ready" in line or time.monotonic() > deadline:
                break
    finally:
        process.terminate()
        process.communicate(timeout=60)
    ready = next(i for i, line in enumerate(lines) if "SketchSearch ready" in line)
    heavy = [line for line in lines[:ready] if HEAVY_IMPORT.search(line)]
    assert not heavy, heavy[:5]
    assert any("Model ready" in line for line in lines[ready:])
