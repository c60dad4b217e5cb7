"""Land a fetched folder atomically: build it in ``DEST.tmp-XXXX`` beside ``DEST`` and rename it
into place only once it is complete and verified, so an interrupted fetch never leaves a
half-written dataset where a reader would look for one.

A landed folder carries a ``manifest.json`` (written inside the staging folder, so it lands
with the data) holding the verification result and a SHA-256 of every file. Its presence, with
matching file count and sizes, is what makes a second fetch a no-op.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from pipesql.storage.files import _UMASK
from pipesql.storage.manifest import MANIFEST_NAME

STAGING_INFIX = ".tmp-"


class LandingError(Exception):
    pass


@contextlib.contextmanager
def _exclusive_lock(dest: Path) -> Iterator[None]:
    """One fetch per destination at a time; a second one fails at once instead of racing."""
    lock_path = dest.with_name(f".{dest.name}.lock")
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LandingError(f"another fetch into {dest} is running (lock {lock_path})") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def stale_staging_dirs(dest: Path) -> list[Path]:
    return sorted(dest.parent.glob(f"{dest.name}{STAGING_INFIX}*"))


@contextlib.contextmanager
def staged(dest: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``dest``; on a clean exit rename it to ``dest``.

    On an exception the staging folder is removed and ``dest`` is untouched. A process killed
    outright leaves its staging folder behind; the next fetch of the same ``dest`` removes it
    (it holds the lock, so no other fetch can own it). An existing ``dest`` is replaced only
    when ``replace`` is true.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(dest):
        for leftover in stale_staging_dirs(dest):
            shutil.rmtree(leftover, ignore_errors=True)
        if dest.exists() and not replace:
            raise LandingError(f"{dest} exists and is not a complete pipesql fetch; pass --force to replace it")
        staging = Path(tempfile.mkdtemp(prefix=f"{dest.name}{STAGING_INFIX}", dir=dest.parent))
        staging.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private; the dataset is not
        try:
            yield staging
            if dest.exists():
                # Two renames: the old copy disappears only once the new one is complete.
                retired = Path(tempfile.mkdtemp(prefix=f"{dest.name}{STAGING_INFIX}old-", dir=dest.parent))
                os.replace(dest, retired / dest.name)
                os.replace(staging, dest)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def read_landed_manifest(dest: str | Path) -> dict | None:
    """The manifest of a folder landed by ``pipesql fetch`` whose files still match it by
    count and size (cheap: no re-hashing), else None."""
    dest = Path(dest)
    try:
        manifest = json.loads((dest / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if manifest.get("stage") != "fetch":
        return None
    recorded = manifest.get("outputs", {}).get(".")
    if not recorded or not isinstance(recorded.get("sha256"), dict):
        return None
    for relative in recorded["sha256"]:
        if not (dest / relative).is_file():
            return None
    present = [p for p in dest.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]
    if len(present) != recorded["files"] or sum(p.stat().st_size for p in present) != recorded["bytes"]:
        return None
    return manifest
