"""Hand-off manifests: what a job ran, with which settings and packages, on which inputs, and
what it wrote, so a result moved to another machine can be checked there."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from pipesql import __version__
from pipesql.files import sha256_file, write_json
from pipesql.settings import as_dict

MANIFEST_NAME = "manifest.json"
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


def _describe(paths: Iterable[str | Path]) -> dict[str, Any]:
    described = {}
    for path in map(Path, paths):
        if path.is_file():
            described[str(path)] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            described[str(path)] = {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
        else:
            described[str(path)] = {"missing": True}
    return described


def write_manifest(out_dir: str | Path, stage: str, settings: Any, *, inputs: Iterable[str | Path] = (),
                   outputs: Iterable[str | Path] = (), metrics: dict[str, Any] | None = None) -> Path:
    path = Path(out_dir) / MANIFEST_NAME
    write_json(path, {
        "stage": stage,
        "command": " ".join(["pipesql", *sys.argv[1:]]) if Path(sys.argv[0]).name in ("pipesql", "__main__.py") else " ".join(sys.argv),
        "settings": as_dict(settings) if settings is not None else None,
        "pipesql_version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "inputs": _describe(inputs),
        "outputs": _describe(outputs),
        "metrics": metrics or {},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    return path
