"""Where Qt would abort the process (no display, an X server that does not answer, the xcb
plugin's system libraries missing), the app says what to do and exits with status 3."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.gui import EXIT_CANNOT_START
from app.gui.display_check import debian_package, display_problem, missing_libraries

REPO = Path(__file__).resolve().parents[2]


def _start_app(tmp_path, **env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)  # the platform a person gets: xcb
    env |= {"SKETCH_SEARCH_HOME": str(tmp_path / "home"), **env_changes}
    return subprocess.run(
        [sys.executable, "-m", "app.cli"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb platform is Linux's")
def test_without_a_display_the_app_says_so_instead_of_aborting(tmp_path):
    run = _start_app(tmp_path)  # before: 'could not connect to display', core dumped
    assert run.returncode == EXIT_CANNOT_START, run.stderr
    assert "No display is available" in run.stderr
    assert "The command line works without a display" in run.stderr
    assert "core dumped" not in run.stderr and "Aborted" not in run.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb platform is Linux's")
def test_an_x_display_that_does_not_answer_is_named(tmp_path):
    run = _start_app(tmp_path, DISPLAY=":93")  # no X server there
    assert run.returncode == EXIT_CANNOT_START, run.stderr
    assert "Cannot connect to the X display ':93'" in run.stderr


def test_debian_package_names():
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxcb-keysyms.so.1") == "libxcb-keysyms1"
    assert debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"
    assert debian_package("libglib-2.0.so.0") == "libglib2.0-0"
    assert debian_package("libfoo.so.3") == "libfoo3"  # Debian's rule for the rest
    assert debian_package("libbar2.so.0") == "libbar2-0"


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build a library")
def test_missing_plugin_libraries_are_named_with_their_packages(tmp_path, monkeypatch):
    """A real shared library that links a library the system lacks, as Qt's xcb plugin does
    on a fresh Debian (libxcb-icccm4, libxcb-keysyms1): each one is named with its package."""
    (tmp_path / "dep.c").write_text("int sketch_search_dep(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text(
        "int sketch_search_dep(void);\nint plugin(void) { return sketch_search_dep(); }\n"
    )
    dep = tmp_path / "libsketchsearch-gone.so.4"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(dep), str(tmp_path / "dep.c"),
         "-Wl,-soname,libsketchsearch-gone.so.4"],
        check=True,
    )  # fmt: skip
    (tmp_path / "libsketchsearch-gone.so").symlink_to(dep.name)
    plugin = tmp_path / "libqfake.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-o", str(plugin), str(tmp_path / "plugin.c"),
         f"-L{tmp_path}", "-lsketchsearch-gone"],
        check=True,
    )  # fmt: skip
    dep.unlink()  # installed when it was built, gone now

    assert missing_libraries(plugin) == ["libsketchsearch-gone.so.4"]
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    problem = display_problem(plugin)
    assert problem is not None
    assert "libsketchsearch-gone.so.4 are not installed" in problem
    assert "sudo apt-get install libsketchsearch-gone4" in problem
    assert "The command line works without a display" in problem


def test_other_platforms_are_left_to_qt(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("DISPLAY", raising=False)
    assert display_problem() is None
