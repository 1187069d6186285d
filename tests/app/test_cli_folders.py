"""``sketch-search index`` and ``remove`` on folders that misbehave: an unmounted drive, an
unreadable subfolder, broken links. Real photos, a real checkpoint, and a real process without
root's power to read everything where a folder must be unreadable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import EXIT_ERROR, main
from engine.models import save_checkpoint
from engine.store import create_fresh

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    model = create_fresh("baseline", bits=64, image_size=96)
    return str(save_checkpoint(model, tmp_path_factory.mktemp("models") / "small.safetensors"))


@pytest.fixture
def folder(tmp_path, shared_data) -> Path:
    """Eight real photos in two subfolders."""
    root = tmp_path / "photos"
    for i, photo in enumerate(
        sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[:400:50]
    ):
        sub = root / ("kept" if i % 2 else "open")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, sub / photo.name)
    return root


def index(capsys, folder: Path, library: Path, checkpoint: str, json_out: bool = True):
    args = ["index", str(folder), "--library", str(library), "--model", checkpoint]
    assert main([*args, "--json"] if json_out else args) == 0
    out = capsys.readouterr().out
    return json.loads(out) if json_out else out


def test_an_unmounted_folder_is_reported_kept_and_removed_on_purpose(
    tmp_path, folder, checkpoint, capsys
):
    library = tmp_path / "library"
    assert index(capsys, folder, library, checkpoint)["encoded"] == 8
    os.rename(folder, tmp_path / "drive")
    folder.mkdir()  # what an unmounted drive's mount point looks like
    summary = index(capsys, folder, library, checkpoint)
    assert summary["removed"] == 0 and summary["kept"] == 8  # was "8 removed"
    assert summary["unavailable"] == [
        {"path": str(folder), "reason": "it is empty (a drive that is not mounted?)"}
    ]
    text = index(capsys, folder, library, checkpoint, json_out=False)
    assert "0 removed" in text
    assert f"not available: {folder}: it is empty" in text
    assert f"sketch-search remove {folder}" in text

    assert main(["remove", str(tmp_path / "elsewhere"), "--library", str(library)]) == EXIT_ERROR
    assert "is not one of this library's folders" in capsys.readouterr().err
    assert main(["remove", str(folder), "--library", str(library), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": [{"path": str(folder), "photos": 8}]}
    summary = index(capsys, folder, library, checkpoint)  # added again: empty, nothing known
    assert (summary["found"], summary["kept"], summary["unavailable"]) == (0, 0, [])


def without_root_powers(command: list[str]) -> list[str]:
    """Run as root without the capabilities that read every folder, so permissions apply."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a folder cannot be made unreadable")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--inh-caps=-all", f"--bounding-set={caps}", *command]


def test_an_unreadable_subfolder_and_broken_links_are_listed_and_nothing_is_removed(
    tmp_path, folder, checkpoint, capsys
):
    library = tmp_path / "library"
    assert index(capsys, folder, library, checkpoint)["encoded"] == 8
    (folder / "open" / "gone.jpg").symlink_to(folder / "open" / "deleted.jpg")
    (folder / "open" / "loop.jpg").symlink_to(folder / "open" / "loop.jpg")
    locked = folder / "kept"
    locked.chmod(0)
    try:
        command = [*CLI, "index", str(folder), "--library", str(library), "--model", checkpoint]
        run = subprocess.run(
            without_root_powers([*command, "--json"]),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        text = subprocess.run(
            without_root_powers(command), cwd=REPO, capture_output=True, text=True, timeout=300
        ).stdout
    finally:
        locked.chmod(0o755)
    assert summary["removed"] == 0 and summary["kept"] == 4  # was "4 removed"
    failures = {f["path"]: f["error"] for f in summary["failures"]}
    assert "No permission to read this folder" in failures[str(locked)]
    assert "kept" in failures[str(locked)]
    assert "dangling link" in failures[str(folder / "open" / "gone.jpg")]
    assert "symlink loop" in failures[str(folder / "open" / "loop.jpg")]
    assert summary["skipped"] == 3 and len(failures) == 3
    assert "3 unreadable" in text and f"unreadable: {locked}: No permission" in text
    # readable again, links removed: the same photos, nothing to do, nothing listed
    (folder / "open" / "gone.jpg").unlink()
    (folder / "open" / "loop.jpg").unlink()
    summary = index(capsys, folder, library, checkpoint)
    assert (summary["unchanged"], summary["encoded"], summary["failures"]) == (8, 0, [])
