"""Smoke test of the frozen program ``dist/sketch-search/``: does the one-folder build run on its
own, as a person would run it?

    python packaging/smoke_test.py [--bundle dist/sketch-search] [--data ../shared/data/sketchy]

Every step runs the frozen executable with a clean environment (no PYTHONPATH, no virtual
environment, a fresh ``SKETCH_SEARCH_HOME``), from a temporary folder, offscreen, and fails on any
``Traceback``, ``ImportError`` or ``ModuleNotFoundError`` in its output. Where ``unshare -rn`` is
allowed, the steps also run without any network. The steps:

1. ``models --json``: the shipped default checkpoint is found, inside the bundle;
2. the app: starts offscreen, shows its main window (waits for its "ready" log line), loads the
   default model ("Model ready") without showing an error, its sketch queries on ONNX Runtime
   (``engine.frozen``), and is stopped; the first start is
   cold (the bundle dropped from the page cache), the second warm; where ``Xvfb`` exists, a third
   start runs on a virtual X server with Qt's xcb platform, as on a desktop;
3. ``index``: indexes a small folder of real photos (copied from the Sketchy data);
4. ``query --json``: a real sketch of one of those classes answers with ranked results;
5. ``train``: two steps of the baseline on a two-class copy of the data, writing a checkpoint,
   which ``index --model`` and ``query --model`` then use;
6. the app's training child: the frozen executable as the ``spawn``ed child process that the
   app trains in (see ``step_training_child``), two steps.

The real data is only read by this test, to copy a few files: the program gets the copies.
Exit status 0 when every step passed; a JSON summary with the timings is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "dist" / "sketch-search"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sketchy"
READY = "SketchSearch ready"  # app.gui.READY_MESSAGE, read from the frozen program's output
MODEL_READY = "Model ready"  # app.gui.library.model_control.MODEL_READY_MESSAGE
QUERIES_ON_ONNX = "Sketch queries run on: onnxruntime"  # engine.query_encoder.QUERIES_RUN_ON
BAD_OUTPUT = ("Traceback", "ImportError", "ModuleNotFoundError")
GUI_ERROR = "Shown to the user:"
CLASSES = ("airplane", "apple")
PHOTOS_PER_CLASS = 6


class SmokeFailure(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def no_network_prefix() -> list[str]:
    """``unshare -rn`` (a user namespace with no network) where this machine allows it."""
    unshare = shutil.which("unshare")
    if not unshare:
        return []
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True)
    return [unshare, "-rn"] if probe.returncode == 0 else []


class Frozen:
    """Runs the frozen executable with an environment that holds nothing from this checkout."""

    def __init__(self, bundle: Path, work: Path, prefix: list[str]) -> None:
        self.exe = bundle / "sketch-search"
        self.work = work
        self.prefix = prefix
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
        self.env = {k: v for k, v in os.environ.items() if k in keep}
        self.env.update(
            HOME=str(work / "user"),
            SKETCH_SEARCH_HOME=str(work / "home"),
            QT_QPA_PLATFORM="offscreen",
            XDG_RUNTIME_DIR=str(work / "runtime"),
        )
        (work / "runtime").mkdir(mode=0o700, exist_ok=True)
        (work / "user").mkdir(exist_ok=True)

    def command(self, *args: str) -> list[str]:
        return [*self.prefix, str(self.exe), *args]

    def run(self, *args: str, timeout: float = 600) -> tuple[str, float]:
        start = time.perf_counter()
        done = subprocess.run(
            self.command(*args),
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        seconds = time.perf_counter() - start
        output = done.stdout + done.stderr
        check_output(output, " ".join(args[:1]))
        check(done.returncode == 0, f"'{args[0]}' exited {done.returncode}:\n{output[-3000:]}")
        return done.stdout, seconds


def check_output(output: str, step: str) -> None:
    for bad in BAD_OUTPUT:
        check(bad not in output, f"{step}: '{bad}' in the output:\n{output[-4000:]}")


def step_models(frozen: Frozen, bundle: Path) -> dict:
    stdout, seconds = frozen.run("models", "--json")
    listing = json.loads(stdout)
    check("baseline" in listing["methods"], f"methods: {listing['methods']}")
    defaults = [c for c in listing["checkpoints"] if c["default"]]
    check(len(defaults) == 1, f"no default checkpoint listed: {listing['checkpoints']}")
    path = Path(defaults[0]["path"]).resolve()
    check(bundle.resolve() in path.parents, f"the default checkpoint {path} is outside the bundle")
    return {"seconds": round(seconds, 1), "default": str(path.relative_to(bundle.resolve()))}


def evict_from_page_cache(folder: Path) -> int:
    """Drop the folder's files from the page cache (POSIX_FADV_DONTNEED), so that the next start
    reads them from disk: a cold start of the program, whatever ran before. Returns the bytes."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            total += path.stat().st_size
    return total


def start_xvfb() -> tuple[subprocess.Popen, str]:
    """A virtual X server on a free display (Xvfb picks it, ``-displayfd``); its own output
    goes nowhere, so it holds none of our pipes."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        display = reader.readline().strip()  # written once the server accepts clients
    if not display:
        server.wait(10)
        raise SmokeFailure(f"Xvfb did not start (exit status {server.returncode})")
    return server, f":{display}"


def step_gui(
    frozen: Frozen, watch_s: float, timeout: float, cold: bool = False, x11: bool = False
) -> dict:
    """Start the app; wait for its window ('ready') and then for its default model ('Model
    ready'); watch it ``watch_s`` seconds more; stop it. ``cold``: evict the bundle from the
    page cache first. ``x11``: on a virtual X server (Xvfb, Qt's xcb platform, as on a
    desktop) instead of Qt's offscreen platform."""
    evicted = evict_from_page_cache(frozen.exe.parent) if cold else 0
    env, xvfb = frozen.env, None
    if x11:
        xvfb, display = start_xvfb()
        env = {k: v for k, v in env.items() if k != "QT_QPA_PLATFORM"}
        env["DISPLAY"] = display
    start = time.perf_counter()
    proc = subprocess.Popen(
        frozen.command(),
        cwd=frozen.work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines: list[str] = []
    ready_s = model_s = None
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        until = start + timeout
        while time.perf_counter() < until:
            line = proc.stdout.readline()
            if not line:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
                continue
            lines.append(line)
            if READY in line and ready_s is None:
                ready_s = time.perf_counter() - start
            if MODEL_READY in line and model_s is None:
                model_s = time.perf_counter() - start
                until = time.perf_counter() + watch_s
        alive = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        os.set_blocking(proc.stdout.fileno(), True)
        rest = proc.stdout.read() or ""
        lines.append(rest)
        proc.stdout.close()
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(20)
    output = "".join(lines)
    check(ready_s is not None, f"the app logged no '{READY}' line in {timeout:.0f} s:\n{output}")
    check(model_s is not None, f"the app logged no '{MODEL_READY}' line:\n{output[-3000:]}")
    check(alive, f"the app exited by itself (status {proc.returncode}):\n{output[-3000:]}")
    check_output(output, "app")
    check(GUI_ERROR not in output, f"the app showed an error:\n{output[-3000:]}")
    # ONNX Runtime (and onnx, which exports the graph) made it into the bundle and run there
    check(QUERIES_ON_ONNX in output, f"no '{QUERIES_ON_ONNX}' line:\n{output[-3000:]}")
    return {
        "evicted_mb": round(evicted / 1e6),
        "ready_s": round(ready_s, 2),
        "model_ready_s": round(model_s, 2),
        "ready_line": next(line for line in lines if READY in line).strip(),
        "model_line": next(line for line in lines if MODEL_READY in line).strip(),
    }


def copy_data(source: Path, target: Path) -> tuple[Path, Path, Path]:
    """A two-class copy of the data set (all its photos and sketches, its split), a folder of a
    few of its photos to index, and one test sketch to query with."""
    split = json.loads((source / "split.json").read_text())
    kept = {k: [i for i in ids if i.split("/")[0] in CLASSES] for k, ids in split.items()}
    for kind in ("photos", "sketches"):
        for name in CLASSES:
            shutil.copytree(source / kind / name, target / "data" / kind / name)
    (target / "data" / "split.json").write_text(json.dumps(kept))
    album = target / "album"
    for name in CLASSES:
        folder = album / name
        folder.mkdir(parents=True)
        for photo in sorted((source / "photos" / name).glob("*.jpg"))[:PHOTOS_PER_CLASS]:
            shutil.copy2(photo, folder / photo.name)
    test_ids = [i for i in kept["test"] if i.startswith(CLASSES[0] + "/")]
    sketch = sorted((source / "sketches").glob(f"{test_ids[0]}-*.png"))[0]
    query = target / f"query-{sketch.name}"
    shutil.copy2(sketch, query)
    return target / "data", album, query


def step_index(frozen: Frozen, album: Path, *model: str) -> dict:
    stdout, seconds = frozen.run("index", str(album), "--json", *model)
    summary = json.loads(stdout)
    expected = PHOTOS_PER_CLASS * len(CLASSES)
    check(summary["encoded"] == expected, f"indexed {summary}, expected {expected} photos")
    check(summary["failed"] == 0, f"unreadable photos: {summary['failures']}")
    return {"seconds": round(seconds, 1), "encoded": summary["encoded"]}


def step_query(frozen: Frozen, query: Path, album: Path, *model: str) -> dict:
    stdout, seconds = frozen.run("query", str(query), "--top", "5", "--json", *model)
    answer = json.loads(stdout)
    results = answer["results"]
    check(len(results) == 5, f"expected 5 results, got {answer}")
    check(all(album in Path(r["path"]).parents for r in results), f"results outside: {results}")
    check([r["rank"] for r in results] == [1, 2, 3, 4, 5], f"ranks: {results}")
    # ranked by the distance that ranked them: the asymmetric one ("score") for a category-level
    # model (engine.asymmetric), the Hamming distance otherwise
    key = "score" if answer.get("asymmetric") else "distance"
    distances = [r[key] for r in results]
    check(distances == sorted(distances), f"results not ranked by {key}: {distances}")
    top_class = Path(results[0]["path"]).parent.name
    return {
        "seconds": round(seconds, 1),
        "top": [f"{Path(r['path']).parent.name}/{Path(r['path']).name}" for r in results],
        "distances": distances,
        "top_class": top_class,
        "timings_ms": answer["timings_ms"],
    }


def step_train(frozen: Frozen, data: Path, out: Path) -> dict:
    args = ["train", "--method", "baseline", "--data", str(data), "--classes", *CLASSES]
    args += ["--epochs", "1", "--max-steps-per-epoch", "2", "--no-eval", "--json"]
    args += ["--out", str(out)]
    stdout, seconds = frozen.run(*args)
    check(out.is_file(), f"training wrote no checkpoint at {out}:\n{stdout[-2000:]}")
    return {"seconds": round(seconds, 1), "checkpoint_mb": round(out.stat().st_size / 1e6, 1)}


def step_training_child(frozen: Frozen, data: Path, out: Path, timeout: float = 600) -> dict:
    """The app trains in a ``spawn``ed child: the frozen executable started with
    ``--multiprocessing-fork``, which ``freeze_support()`` in ``app.cli.main`` turns into the
    child. This script plays the app's side (``TrainingProcess`` from the source tree) and makes
    multiprocessing start the frozen executable as the child, with what the frozen app would
    pass it: the command line of a frozen parent, and no paths of this checkout (the child keeps
    its own ``sys.path``). The child runs without the network namespace of the other steps."""
    from multiprocessing import resource_tracker, spawn

    sys.path.insert(0, str(ROOT))
    from app.training_process import TrainingProcess, TrainingRequest
    from training import TrainConfig

    exe = str(frozen.exe)
    config = TrainConfig(method="baseline", epochs=1, max_steps_per_epoch=2, classes=CLASSES)
    request = TrainingRequest(
        config=config.to_dict(),
        data_dir=str(data),
        out=str(out),
        log_file=str(frozen.work / "child.log"),
        validate_each_epoch=False,
        evaluate_at_end=False,
    )
    original = (
        spawn.get_command_line,
        spawn.get_preparation_data,
        spawn.get_executable,
        dict(os.environ),
    )

    def command_line(**fds) -> list[str]:  # what multiprocessing gives a frozen parent
        return [exe, "--multiprocessing-fork", *(f"{k}={v}" for k, v in fds.items())]

    def preparation(name: str) -> dict:
        data = original[1](name)
        for key in ("sys_path", "init_main_from_path", "init_main_from_name", "orig_dir"):
            data.pop(key, None)
        return {**data, "sys_argv": [exe], "dir": str(frozen.work)}

    # multiprocessing's resource tracker (a helper process for named semaphores) is this
    # Python's: the frozen app would start the frozen executable with its own interpreter flags
    # for it, which PyInstaller's multiprocessing run-time hook recognises; those flags are not
    # this interpreter's, so the frozen tracker is left out of this emulation.
    resource_tracker.ensure_running()
    start = time.perf_counter()
    spawn.get_command_line, spawn.get_preparation_data = command_line, preparation
    spawn.get_executable = lambda: os.fsencode(exe)
    os.environ.clear()
    os.environ.update(frozen.env)
    try:
        child = TrainingProcess(request)
        child.start()
    finally:
        spawn.get_command_line, spawn.get_preparation_data, spawn.get_executable = original[:3]
        os.environ.clear()
        os.environ.update(original[3])
    messages: list = []
    try:
        while not child.finished and time.perf_counter() - start < timeout:
            messages += child.poll()
            if not child.is_alive() and not child.finished:
                messages += child.poll()
                break
            time.sleep(0.2)
    finally:
        child.stop(timeout_s=30)
        exitcode = child.exitcode
        child.close()
    seconds = time.perf_counter() - start
    kinds = [kind for kind, _ in messages]
    log_text = Path(request.log_file).read_text() if Path(request.log_file).is_file() else ""
    failed = [payload for kind, payload in messages if kind == "failed"]
    check(not failed, f"the training child failed: {failed}\n{log_text[-3000:]}")
    check("finished" in kinds, f"the child sent {kinds}, exit {exitcode}\n{log_text[-3000:]}")
    started = next(payload for kind, payload in messages if kind == "started")
    check("trained" in kinds and out.is_file(), f"no checkpoint from the child: {kinds}")
    steps = [p["global_step"] for k, p in messages if k == "progress"]
    check(steps and max(steps) == 2, f"the child trained steps {steps}, expected 2")
    return {
        "seconds": round(seconds, 1),
        "child_pid": started["pid"],
        "messages": len(messages),
        "steps": max(steps),
        "exitcode": exitcode,
        # True when frozen: PyInstaller's PySide6 run-time hook imports QtCore in every process
        # of the program (to point Qt at its plugins); the child still makes no QApplication
        "qt_module_loaded": started["qt_loaded"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Sketchy-layout data")
    parser.add_argument("--gui-timeout", type=float, default=300, help="seconds to 'ready'")
    parser.add_argument("--watch", type=float, default=10, help="seconds to watch after the model")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    bundle = args.bundle.resolve()
    if not (bundle / "sketch-search").is_file():
        print(f"No frozen program at {bundle}: run python packaging/build.py", file=sys.stderr)
        return 2
    have_data = (args.data / "split.json").is_file()
    if not have_data:
        print(
            f"No Sketchy-layout data at {args.data} (see ../shared/data/README.md): only the "
            "models and app steps run.",
            file=sys.stderr,
        )
    work = Path(tempfile.mkdtemp(prefix="sketch-search-smoke-"))
    prefix = no_network_prefix()
    frozen = Frozen(bundle, work, prefix)
    summary: dict = {"bundle": str(bundle), "no_network": bool(prefix), "data": have_data}
    summary["steps"] = {}
    start = time.perf_counter()
    failed = None
    try:
        steps = [
            ("models", lambda: step_models(frozen, bundle)),
            ("app (cold)", lambda: step_gui(frozen, args.watch, args.gui_timeout, cold=True)),
            ("app (second start)", lambda: step_gui(frozen, 1, args.gui_timeout)),
        ]
        if shutil.which("Xvfb"):
            steps.append(("app (X11)", lambda: step_gui(frozen, 1, args.gui_timeout, x11=True)))
        if have_data:
            data, album, query = copy_data(args.data, work)
            steps += [
                ("index", lambda: step_index(frozen, album)),
                ("query", lambda: step_query(frozen, query, album)),
            ]
        if have_data and not args.skip_train:
            trained = work / "trained.safetensors"
            child_out = work / "child.safetensors"
            steps += [
                ("train", lambda: step_train(frozen, data, trained)),
                ("index (trained)", lambda: step_index(frozen, album, "--model", str(trained))),
                (
                    "query (trained)",
                    lambda: step_query(frozen, query, album, "--model", str(trained)),
                ),
                ("training child", lambda: step_training_child(frozen, data, child_out)),
            ]
        for name, step in steps:
            print(f"== {name}", flush=True)
            result = step()
            summary["steps"][name] = result
            print(json.dumps(result), flush=True)
    except (SmokeFailure, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        failed = f"{type(exc).__name__}: {exc}"
    finally:
        summary["seconds"] = round(time.perf_counter() - start, 1)
        if args.keep:
            summary["work"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    summary["passed"] = failed is None
    print(json.dumps(summary, indent=1))
    if failed:
        print(f"SMOKE TEST FAILED: {failed}", file=sys.stderr)
        return 1
    print(f"smoke test passed in {summary['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
