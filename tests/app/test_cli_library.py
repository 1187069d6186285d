"""``sketch-search index`` and ``query`` on the libraries of issue 15: a file name that is not
UTF-8, a library indexed by two models, a read-only library, and a library another process is
indexing. Real photos, real checkpoints, real processes where a second one matters."""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import shlex
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import EXIT_ERROR, main
from engine.models import save_checkpoint
from engine.store import create_fresh
from tests.engine.processes import hold_writer

REPO = Path(__file__).resolve().parents[2]
CTX = multiprocessing.get_context("spawn")
CLI = [sys.executable, "-c", "import sys; from app.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Two small models (different ids): what 'index A --model dsh' and 'index B --model
    baseline' leave in a library, at a fraction of the cost."""
    folder = tmp_path_factory.mktemp("models")
    return {
        bits: save_checkpoint(
            create_fresh("baseline", bits=bits, image_size=96), folder / f"b{bits}.safetensors"
        )
        for bits in (32, 64)
    }


@pytest.fixture
def real(shared_data) -> tuple[list[Path], Path]:
    photos = sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::83][:12]
    sketch = sorted((shared_data / "sketchy" / "sketches" / "cup").glob("*.png"))[0]
    return photos, sketch


def _copy(photos: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for p in photos:
        shutil.copy(p, folder / p.name)
    return folder


def _run(*args: str, as_read_only_user: bool = False) -> subprocess.CompletedProcess:
    """The command in a process of its own; ``as_read_only_user``: one that file permissions
    bind (root without CAP_DAC_OVERRIDE, where the tests run as root)."""
    command = [*CLI, *args]
    if as_read_only_user and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions cannot bind here")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_file_name_that_is_not_utf8_is_indexed_and_shown_escaped(
    tmp_path, real, checkpoints, capsys
):
    photos, sketch = real
    folder = _copy(photos[:3], tmp_path / "photos")
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.jpg")
    try:
        with open(raw, "wb") as fh:
            fh.write(photos[3].read_bytes())
        with open(os.path.join(os.fsencode(folder), b"broken\xff.jpg"), "wb") as fh:
            fh.write(b"not a jpeg" * 20)
    except OSError as exc:
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    args = ["--library", str(tmp_path / "lib"), "--model", str(checkpoints[64])]

    # capsys, like a UTF-8 terminal, refuses unencodable text: before, the run never finished
    assert main(["index", str(folder), *args]) == 0
    out = capsys.readouterr().out
    assert "4 encoded" in out and "broken\\xff.jpg" in out
    assert main(["index", str(folder), "--json", *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unchanged"] == 5  # found again
    [failure] = summary["failures"]
    assert failure["path"].endswith("broken\\xff.jpg")
    assert base64.b64decode(failure["path_base64"]).endswith(b"/broken\xff.jpg")

    assert main(["query", str(sketch), "--top", "4", *args]) == 0
    assert "caf\\xe9.jpg" in capsys.readouterr().out
    assert main(["query", str(sketch), "--top", "4", "--json", *args]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    [cafe] = [r for r in results if "path_base64" in r]
    assert cafe["path"] == display(raw) and base64.b64decode(cafe["path_base64"]) == raw
    assert all("path_base64" not in r for r in results if r is not cafe)


def display(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def test_query_says_which_photos_the_model_has_not_indexed_and_how(
    tmp_path, real, checkpoints, capsys
):
    photos, sketch = real
    a = _copy(photos[:4], tmp_path / "A")
    b = _copy(photos[4:], tmp_path / "B")
    lib = ["--library", str(tmp_path / "lib")]
    assert main(["index", str(a), *lib, "--model", str(checkpoints[32])]) == 0
    assert main(["index", str(b), *lib, "--model", str(checkpoints[64])]) == 0
    capsys.readouterr()

    assert main(["query", str(sketch), *lib]) == 0  # the library's model: the last one used
    err = capsys.readouterr().err
    assert "8 photos searched" in err
    assert "4 more photos in the library have no codes for" in err  # before: not a word
    command = err.split("To search them too, run: ")[1].strip()
    assert shlex.split(command)[:2] == ["sketch-search", "index"]
    assert str(checkpoints[64]) in command
    assert main(["query", str(sketch), "--json", *lib]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["indexed"], out["not_indexed"]) == (8, 4)

    assert main(shlex.split(command)[1:]) == 0  # the command it gave indexes the other 4
    assert "4 encoded" in capsys.readouterr().out
    assert main(["query", str(sketch), "--json", *lib]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert (out["indexed"], out["not_indexed"]) == (12, 0)
    assert "no codes" not in captured.err


def _make_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_a_read_only_library_is_queried_and_indexing_says_why_not(
    tmp_path, real, checkpoints, capsys
):
    photos, sketch = real
    folder = _copy(photos[:6], tmp_path / "photos")
    model = ["--model", str(checkpoints[64])]
    assert main(["index", str(folder), "--library", str(tmp_path / "lib"), *model]) == 0
    read_only = tmp_path / "archive" / "lib"  # e.g. a library on a read-only disk
    shutil.copytree(tmp_path / "lib", read_only)  # with its -wal and -shm: the app is running
    clean = tmp_path / "disk" / "lib"  # closed cleanly: the catalog file alone
    shutil.copytree(read_only, clean)
    last = sqlite3.connect(clean / "catalog.sqlite")  # the last connection folds the WAL in
    last.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    last.close()
    assert not {"catalog.sqlite-wal", "catalog.sqlite-shm"} & {p.name for p in clean.iterdir()}
    _make_read_only(read_only)
    _make_read_only(clean)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in read_only.iterdir()}
    try:
        done = _run("query", str(sketch), "--json", "--library", str(read_only), *model,
                    as_read_only_user=True)  # fmt: skip
        assert done.returncode == 0, done.stderr  # before: 'attempt to write a readonly database'
        assert len(json.loads(done.stdout)["results"]) == 6
        done = _run("query", str(sketch), "--json", "--library", str(clean), *model,
                    as_read_only_user=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["results"]) == 6

        done = _run("index", str(folder), "--library", str(read_only), *model,
                    as_read_only_user=True)  # fmt: skip
        assert done.returncode == EXIT_ERROR
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: ") and "read-only" in line
        assert "can still be searched" in line and "Move it away" not in line
        after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in read_only.iterdir()}
        assert after == files  # not a byte changed

        new = read_only / "new"  # a new library cannot be made on that disk
        done = _run("query", str(sketch), "--library", str(new), *model, as_read_only_user=True)
        [line] = done.stderr.strip().splitlines()
        assert done.returncode == EXIT_ERROR and "cannot be written" in line
        assert "creating the library folder" in line and not new.exists()
    finally:
        for path in [read_only, *read_only.rglob("*"), clean, *clean.rglob("*")]:
            path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)


def test_a_second_index_run_is_told_who_holds_the_library_or_waits(
    tmp_path, real, checkpoints, capsys
):
    photos, _ = real
    folder = _copy(photos[:5], tmp_path / "photos")
    lib = tmp_path / "lib"
    args = [str(folder), "--library", str(lib), "--model", str(checkpoints[64])]
    ready, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=hold_writer, args=(str(lib), ready, release))
    holder.start()  # another process indexing this library
    try:
        assert ready.wait(120)
        assert main(["index", *args]) == EXIT_ERROR
        [line] = capsys.readouterr().err.strip().splitlines()
        assert f"process {holder.pid} on {socket.gethostname()} (indexing since" in line
        assert "--wait" in line

        waiting = subprocess.Popen(
            [*CLI, "index", *args, "--wait", "--json"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = []
        for line in waiting.stderr:  # it says whom it waits for, then waits
            seen.append(line)
            if line.startswith("Waiting for"):
                break
        assert f"Waiting for process {holder.pid} on" in seen[-1], seen
        assert waiting.poll() is None  # still waiting
        release.set()
        out, err = waiting.communicate(timeout=300)
        assert waiting.returncode == 0, err
        assert json.loads(out)["encoded"] == 5
    finally:
        release.set()
        holder.join(60)
