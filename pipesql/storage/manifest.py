"""Hand-off manifests: what a job ran, with which settings and packages, in which environment
(lock file hash, base image digest), on which inputs, and what it wrote, so a result moved to
another machine can be checked there. Beside each manifest the job's resolved settings are
written as ``recipe.yaml`` (pipesql.config.recipes), to rerun it with ``--config``.

Outputs are recorded by path relative to the manifest's folder when they lie inside it, with a
SHA-256 for every file (also every file of an output folder), so that
:func:`verify_manifest` can re-hash them wherever the folder has been copied to. Inputs are only
summarised (a dataset folder can be tens of gigabytes; hashing it on every run is not worth it).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pipesql import __version__
from pipesql.config.recipes import RECIPE_NAME, recipe_text
from pipesql.config.settings import as_dict
from pipesql.storage.files import atomic_open, sha256_file, write_json

MANIFEST_NAME = "manifest.json"
# The lock file an environment was installed from, copied into it (sys.prefix) by make / the image.
LOCK_IN_ENVIRONMENT = "pipesql.lock"
BASE_IMAGE_VARIABLE = "PIPESQL_BASE_IMAGE"
_PACKAGES = ("sqlglot", "sqlglotc", "zetasql", "torch", "transformers", "trl", "peft", "datasets",
             "accelerate", "bitsandbytes", "liger-kernel", "vllm")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def environment() -> dict[str, str | None]:
    """What names the environment a job ran in: the SHA-256 of the lock file it was installed from
    (``make setup`` and the image copy it into the environment as ``pipesql.lock``) and, in the
    image, the base image by digest (``PIPESQL_BASE_IMAGE``, set by docker/Dockerfile). None where
    there is no such thing (an environment installed otherwise; outside a container)."""
    lock = Path(sys.prefix) / LOCK_IN_ENVIRONMENT
    return {"lock_sha256": sha256_file(lock) if lock.is_file() else None,
            "base_image": os.environ.get(BASE_IMAGE_VARIABLE) or None}


def _files_under(folder: Path) -> list[Path]:
    # A manifest inside an output folder must not list itself (it is rewritten after hashing).
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def _describe_one(path: Path, hash_folders: bool) -> dict[str, Any]:
    if path.is_file():
        return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if path.is_dir():
        files = _files_under(path)
        described: dict[str, Any] = {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
        if hash_folders:
            described["sha256"] = {p.relative_to(path).as_posix(): sha256_file(p) for p in files}
        return described
    return {"missing": True}


def _key(path: Path, root: Path) -> str:
    """Where an output is recorded: relative to the manifest's folder if inside it (so the
    folder can move), else absolute."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:
        return str(path.resolve())


def _describe(paths: Iterable[str | Path], root: Path | None = None, hash_folders: bool = False) -> dict[str, Any]:
    described = {}
    for path in map(Path, paths):
        key = _key(path, root) if root is not None else str(path)
        described[key] = _describe_one(path, hash_folders)
    return described


def write_manifest(out_dir: str | Path, stage: str, settings: Any, *, inputs: Iterable[str | Path] = (),
                   outputs: Iterable[str | Path] = (), metrics: dict[str, Any] | None = None) -> Path:
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    if settings is not None:
        # Written first, so that it is hashed with the outputs when out_dir is one of them.
        with atomic_open(out_dir / RECIPE_NAME) as stream:
            stream.write(recipe_text(settings))
    write_json(path, {
        "stage": stage,
        "command": " ".join(["pipesql", *sys.argv[1:]]) if Path(sys.argv[0]).name in ("pipesql", "__main__.py") else " ".join(sys.argv),
        "settings": as_dict(settings) if settings is not None else None,
        "pipesql_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "environment": environment(),
        "inputs": _describe(inputs),
        "outputs": _describe([*outputs, *([out_dir / RECIPE_NAME] if settings is not None else [])],
                             root=out_dir, hash_folders=True),
        "metrics": metrics or {},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    return path


@dataclass
class ManifestCheck:
    """The outcome of re-hashing a manifest's outputs: ``ok`` when nothing is missing or changed.
    Files that appeared in an output folder since are listed in ``added`` but do not fail it."""

    manifest: Path
    checked_files: int = 0
    problems: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    # The recorded lock hash or base image differs from the environment checking it.
    environment: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.environment


def _check_file(check: ManifestCheck, label: str, path: Path, expected_sha: str, expected_bytes: int | None) -> None:
    if not path.is_file():
        check.problems.append(f"{label}: missing")
        return
    check.checked_files += 1
    if expected_bytes is not None and path.stat().st_size != expected_bytes:
        check.problems.append(f"{label}: size {path.stat().st_size} != {expected_bytes} recorded")
    elif sha256_file(path) != expected_sha:
        check.problems.append(f"{label}: sha256 differs from the one recorded")


def _compare_environment(check: ManifestCheck, recorded: dict[str, Any] | None) -> None:
    if recorded is None:
        check.environment.append("no environment recorded (written by an older pipesql?)")
        return
    here = environment()
    for key, label in (("lock_sha256", "lock file sha256"), ("base_image", "base image")):
        if recorded.get(key) != here[key]:
            check.environment.append(f"{label}: made with {recorded.get(key)}, checked with {here[key]}")


def verify_manifest(folder: str | Path, check_environment: bool = True) -> ManifestCheck:
    """Re-hash every output recorded in ``folder/manifest.json`` and say what is missing or
    changed. Relative entries are looked up under ``folder``, wherever it has been moved. With
    ``check_environment``, the lock hash and base image recorded must also be this environment's
    (verifying a hand-off in a container of the same image)."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME if folder.is_dir() else folder
    folder = manifest_path.parent
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no manifest: {manifest_path}") from None
    except ValueError as error:
        raise ValueError(f"{manifest_path}: not valid JSON: {error}") from None
    check = ManifestCheck(manifest_path)
    if check_environment:
        _compare_environment(check, manifest.get("environment"))
    for key, recorded in manifest.get("outputs", {}).items():
        path = Path(key) if os.path.isabs(key) else folder / key
        if recorded.get("missing"):
            continue  # it was already absent when the job finished; nothing to compare
        hashes = recorded.get("sha256")
        if isinstance(hashes, str):
            _check_file(check, key, path, hashes, recorded.get("bytes"))
        elif isinstance(hashes, dict):
            if not path.is_dir():
                check.problems.append(f"{key}: folder missing")
                continue
            for relative, digest in hashes.items():
                _check_file(check, f"{key}/{relative}", path / relative, digest, None)
            present = {p.relative_to(path).as_posix() for p in _files_under(path)}
            check.added.extend(f"{key}/{name}" for name in sorted(present - set(hashes)))
        else:
            check.problems.append(f"{key}: recorded without hashes (written by an older pipesql?)")
    return check


class InputMismatch(ValueError):
    """A stage's input does not match the manifest of the folder it lies in."""


def check_input(path: str | Path) -> None:
    """Refuse an input whose folder holds a manifest its files do not match, naming the files.

    Every stage calls this on the outputs of the stage before it (``golden_pairs.jsonl``, a
    ``train.jsonl``, a run or model folder): a folder left by a run cut short, or holding files
    of two runs, is refused instead of used. An input with no manifest beside it (made by hand,
    or elsewhere) has nothing to be checked against and passes."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / MANIFEST_NAME).is_file():
        return
    try:
        check = verify_manifest(folder, check_environment=False)
    except ValueError as error:
        raise InputMismatch(f"{path}: {error}") from None
    if check.problems:
        shown = "; ".join(check.problems[:5]) + (f"; and {len(check.problems) - 5} more" if len(check.problems) > 5 else "")
        raise InputMismatch(f"{path}: the files of {folder} do not match its {MANIFEST_NAME} (a run cut short, or "
                            f"files of two runs?): {shown}")


def require_inputs(stage: str, paths: Iterable[str | Path | None]) -> None:
    """:func:`check_input` on each input that exists, as the ``SystemExit`` that stops ``pipesql
    STAGE`` naming the file."""
    for path in paths:
        if path and str(path) not in ("", ".") and Path(path).exists():
            try:
                check_input(path)
            except InputMismatch as error:
                raise SystemExit(f"pipesql {stage}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m pipesql.storage.manifest [--outputs-only] FOLDER...``: verify hand-off folders
    (outputs, and unless --outputs-only the environment); exit 1 on a problem."""
    folders = list(sys.argv[1:] if argv is None else argv)
    outputs_only = "--outputs-only" in folders
    folders = [f for f in folders if f != "--outputs-only"]
    if not folders:
        print("usage: python -m pipesql.storage.manifest [--outputs-only] FOLDER [FOLDER ...]", file=sys.stderr)
        return 2
    failed = False
    for folder in folders:
        check = verify_manifest(folder, check_environment=not outputs_only)
        status = "ok" if check.ok else "FAILED"
        print(f"{check.manifest}: {status} ({check.checked_files} files re-hashed)")
        for problem in check.environment:
            print(f"  environment: {problem}")
        for problem in check.problems:
            print(f"  changed/missing: {problem}")
        for name in check.added:
            print(f"  not in manifest: {name}")
        failed |= not check.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
