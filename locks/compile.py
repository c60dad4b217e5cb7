"""Compile the lock files with uv, or check that they still match pyproject.toml.

    python locks/compile.py            # rewrite locks/cpu.txt and locks/cuda.txt
    python locks/compile.py --check    # recompile into a temporary folder; exit 1 if a lock differs

Two sets, each pyproject.toml's core dependencies plus some extras, plus one PyTorch build:

- ``cpu.txt``: extras train, fetch, cluster, dev and ``torch==2.13.0+cpu`` (what ``make setup`` installs);
  universal (any OS, Python >= 3.11), macOS taking PyPI's torch, which is the CPU build there.
- ``cuda.txt``: extras train, gpu, fetch, cluster for the image (Linux x86-64, glibc 2.35, Python 3.11);
  torch itself is ``torch-cuda.in`` (``+cu126``), installed first, from PyTorch's cu126 wheels.

Packages are resolved from PyPI as it was at ``EXCLUDE_NEWER`` (uv ``--exclude-newer``), so a
recompile gives the same file until that date is moved: refreshing is editing the date (or a pin in
pyproject.toml) and running this script. PyTorch's local-version builds (``+cpu``, ``+cu126``) are
not on PyPI; they come from PyTorch's wheel pages (``--torch-links`` overrides the page, e.g. with
a folder of wheels on a machine that cannot reach download.pytorch.org).

When PyTorch's cu126 page cannot be reached, ``--cuda-standin`` resolves the CUDA set against
PyPI's ``torch`` of the same version (the CUDA 13 build) and leaves torch and its ``nvidia-*`` /
``cuda-*`` packages out of ``cuda.txt``: every other package is the same, since the two builds
differ only in those, and torch's CUDA wheel pins its ``nvidia-*`` packages exactly itself. The
mode a lock was made in is written in its header, and ``--check`` recompiles it the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LOCKS_DIR = Path(__file__).resolve().parent
REPO = LOCKS_DIR.parent
# PyPI as of this instant; move it forward to take newer releases (then rerun this script).
EXCLUDE_NEWER = "2026-11-29T00:00:00Z"
STANDIN_MARK = "# cuda-standin: "
# Packages that exist only for torch's CUDA build (left out of a stand-in CUDA lock).
CUDA_BUILD_PACKAGES = re.compile(r"^(torch|nvidia-[\w.-]+|cuda-[\w.-]+)==", flags=re.I)


@dataclasses.dataclass(frozen=True)
class LockSet:
    name: str
    extras: tuple[str, ...]
    torch_in: str  # file in locks/ holding the torch requirement
    torch_links: str  # PyTorch's flat wheel page for that build
    target: tuple[str, ...]  # uv options naming the platforms resolved for
    description: str


LOCK_SETS = {
    "cpu": LockSet("cpu", ("train", "fetch", "cluster", "dev"), "torch-cpu.in", "https://download.pytorch.org/whl/cpu/torch/",
                   ("--universal", "--python-version", "3.11"),
                   "make setup / make test / make demo: the CPU set (any OS, Python >= 3.11)"),
    "cuda": LockSet("cuda", ("train", "gpu", "fetch", "cluster"), "torch-cuda.in", "https://download.pytorch.org/whl/cu126/torch/",
                    ("--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_35"),
                    "docker/Dockerfile: the CUDA 12.6 image set (Linux x86-64, glibc 2.35, Python 3.11)"),
}


def uv() -> str:
    found = shutil.which("uv", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise SystemExit("uv is not installed: pip install uv (it is in the dev extra)")
    return found


def _standin_requirement(torch_in: Path) -> str:
    """``torch==2.13.0+cu126`` -> ``torch==2.13.0``: PyPI's build of the same version."""
    return re.sub(r"\+[\w.]+", "", torch_in.read_text(encoding="utf-8"))


def _drop_cuda_build_packages(text: str) -> str:
    """Remove torch and its nvidia-*/cuda-* packages, each with its ``# via`` lines."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if not line.startswith((" ", "#")):
            skipping = bool(CUDA_BUILD_PACKAGES.match(line))
        if not skipping:
            kept.append(line)
    return "".join(kept)


def header(lock: LockSet, standin: bool) -> str:
    lines = [
        f"# {lock.description}.",
        "# Made by `python locks/compile.py` (uv pip compile) from pyproject.toml, extras "
        f"{', '.join(lock.extras)}, and locks/{lock.torch_in};",
        f"# PyPI as of {EXCLUDE_NEWER} (uv --exclude-newer). Do not edit: change pyproject.toml or the date in",
        "# locks/compile.py and rerun it; `python locks/compile.py --check` (CI) fails when this file is stale.",
        f"# torch comes from {lock.torch_links} (see locks/{lock.torch_in}).",
    ]
    if standin:
        lines += [
            f"{STANDIN_MARK}torch and its nvidia-*/cuda-* packages are not in this file: PyTorch's cu126 page",
            "#   was unreachable where it was made, so the set was resolved against PyPI's torch of the same",
            f"#   version. They are installed first from locks/{lock.torch_in}, whose wheel pins its nvidia-*",
            "#   packages exactly. Rerun without --cuda-standin where download.pytorch.org is reachable.",
        ]
    return "\n".join(lines) + "\n"


def compile_lock(lock: LockSet, out: Path, torch_links: str | None, standin: bool) -> None:
    torch_in = LOCKS_DIR / lock.torch_in
    with tempfile.TemporaryDirectory() as tmp:
        requirement = Path(tmp) / "torch.in"
        requirement.write_text(_standin_requirement(torch_in) if standin else torch_in.read_text(encoding="utf-8"))
        command = [uv(), "pip", "compile", "--quiet", "--no-header", "--exclude-newer", EXCLUDE_NEWER,
                   *lock.target, *(f"--extra={extra}" for extra in lock.extras),
                   "pyproject.toml", str(requirement), "-o", str(Path(tmp) / "lock.txt")]
        if not standin:
            command += ["--find-links", torch_links or lock.torch_links]
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
        if result.returncode:
            raise SystemExit(f"uv pip compile failed for locks/{lock.name}.txt:\n{result.stderr}")
        body = (Path(tmp) / "lock.txt").read_text(encoding="utf-8").replace(str(requirement), f"locks/{lock.torch_in}")
    if standin:
        body = _drop_cuda_build_packages(body)
    out.write_text(header(lock, standin) + body, encoding="utf-8")


def made_as_standin(path: Path) -> bool:
    return path.is_file() and STANDIN_MARK in path.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="recompile into a temporary folder and compare")
    parser.add_argument("--only", choices=sorted(LOCK_SETS), action="append", help="just this lock (repeatable)")
    parser.add_argument("--torch-links", default=os.environ.get("TORCH_LINKS") or None, help="where the +cpu torch wheel is (default: PyTorch's CPU page); "
                        "a folder works, e.g. /opt/wheels [env TORCH_LINKS]")
    parser.add_argument("--cuda-standin", action="store_true",
                        help="lock the CUDA set against PyPI's torch (see above); --check reads this from the lock")
    args = parser.parse_args(argv)
    stale = []
    for name in args.only or LOCK_SETS:
        lock, path = LOCK_SETS[name], LOCKS_DIR / f"{name}.txt"
        standin = name == "cuda" and (made_as_standin(path) if args.check else args.cuda_standin)
        links = args.torch_links if name == "cpu" else None
        if not args.check:
            compile_lock(lock, path, links, standin)
            print(f"wrote {path.relative_to(REPO)}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / path.name
            compile_lock(lock, fresh, links, standin)
            old = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []
            diff = list(difflib.unified_diff(old, fresh.read_text(encoding="utf-8").splitlines(keepends=True),
                                             f"locks/{path.name}", "recompiled"))
        if diff:
            stale.append(name)
            sys.stdout.writelines(diff)
        print(f"locks/{path.name}: {'STALE' if diff else 'matches pyproject.toml'}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
