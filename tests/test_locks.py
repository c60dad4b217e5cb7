"""The lock files (locks/cpu.txt, locks/cuda.txt) against pyproject.toml, offline.

`python locks/compile.py --check` (CI: `make lock-check`) recompiles them with uv and fails on any
difference; these tests check, without a network, that every requirement of pyproject.toml is
pinned in each lock at a version that satisfies it, and that the CPU set holds no CUDA package.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"

spec = importlib.util.spec_from_file_location("lock_compiler", LOCKS / "compile.py")
lock_compiler = importlib.util.module_from_spec(spec)
sys.modules["lock_compiler"] = lock_compiler
spec.loader.exec_module(lock_compiler)

LINUX_311 = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11",
             "python_full_version": "3.11.7", "platform_machine": "x86_64", "implementation_name": "cpython",
             "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}


def pins(lock: Path, environment: dict[str, str] = LINUX_311) -> dict[str, Version]:
    """name -> version of every pin in a lock file that applies on ``environment``."""
    found = {}
    for line in lock.read_text().splitlines():
        if not line or line.startswith((" ", "#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            (version,) = [s.version for s in requirement.specifier]
            found[canonicalize_name(requirement.name)] = Version(version)
    return found


def wanted(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"]) + [r for extra in extras for r in project["optional-dependencies"][extra]]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("name", sorted(lock_compiler.LOCK_SETS))
def test_every_pyproject_requirement_is_pinned_in_the_lock(name):
    lock_set = lock_compiler.LOCK_SETS[name]
    pinned = pins(LOCKS / f"{name}.txt")
    missing, unsatisfied = [], []
    for requirement in wanted(lock_set.extras):
        if requirement.marker is not None and not requirement.marker.evaluate(LINUX_311):
            continue
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            missing.append(str(requirement))
        elif not requirement.specifier.contains(version, prereleases=True):
            unsatisfied.append(f"{requirement} (locked {version})")
    assert (missing, unsatisfied) == ([], []), "run: python locks/compile.py"
    header = (LOCKS / f"{name}.txt").read_text().split("\n", 6)
    assert any(lock_compiler.EXCLUDE_NEWER in line for line in header)


def test_the_cpu_set_is_the_cpu_build_of_torch_without_cuda_packages():
    linux = pins(LOCKS / "cpu.txt")
    assert str(linux["torch"]).endswith("+cpu")
    assert not [n for n in linux if re.match(r"(nvidia|cuda)-", n)]
    mac = pins(LOCKS / "cpu.txt", {**LINUX_311, "sys_platform": "darwin", "platform_system": "Darwin"})
    assert mac["torch"] == Version(str(linux["torch"]).split("+")[0])  # PyPI's macOS torch is the CPU build
    # The version in torch-cpu.in is the one locked.
    (torch_in,) = [Requirement(line) for line in (LOCKS / "torch-cpu.in").read_text().splitlines()
                   if line.startswith("torch") and Marker("sys_platform != 'darwin'") == Requirement(line).marker]
    assert torch_in.specifier.contains(linux["torch"])


def test_the_cuda_set_is_the_image_stack_and_names_how_torch_comes():
    text = (LOCKS / "cuda.txt").read_text()
    cuda = pins(LOCKS / "cuda.txt")
    assert {"bitsandbytes", "liger-kernel", "transformers", "trl", "peft", "accelerate"} <= set(cuda)
    assert "uv" not in cuda and "pytest" not in cuda  # no dev tools in the image
    if lock_compiler.STANDIN_MARK in text:
        assert "torch" not in cuda and not [n for n in cuda if re.match(r"(nvidia|cuda)-", n)]
    else:
        assert str(cuda["torch"]).endswith("+cu126")
    assert re.search(r"^torch==[\d.]+\+cu126$", (LOCKS / "torch-cuda.in").read_text(), flags=re.M)


def test_a_standin_lock_drops_torch_and_its_cuda_packages_with_their_annotations():
    text = ("accelerate==1.0\n    # via pipesql\ncuda-toolkit==13.0\n    # via torch\nnvidia-cublas==13.1\n"
            "    # via\n    #   cuda-toolkit\n    #   torch\ntorch==2.13.0\n    # via accelerate\ntriton==3.7.1\n")
    assert lock_compiler._drop_cuda_build_packages(text) == "accelerate==1.0\n    # via pipesql\ntriton==3.7.1\n"


def test_the_makefile_takes_torch_from_pytorchs_page_and_the_rest_from_the_lock():
    makefile = (REPO / "Makefile").read_text()
    assert "TORCH_LINKS ?= https://download.pytorch.org/whl/$(TORCH_BUILD_$(FLAVOR))/torch/" in makefile
    assert "TORCH_BUILD_cpu := cpu" in makefile and "FLAVOR ?= cpu" in makefile
    recipe = [line.strip() for line in makefile.split("$(VENV)/.installed:")[1].splitlines()[1:8]]
    assert recipe[2].endswith("--find-links $(TORCH_LINKS) -r $(TORCH_PIN)")
    assert recipe[3].endswith("pip install -q -r $(LOCK)")
    assert recipe[4].endswith("pip install -q --no-deps -e .")
    assert recipe[5] == "cp $(LOCK) $(VENV)/pipesql.lock"
