"""Checkpoint directories that are either complete or absent.

A checkpoint is written into ``<run>/.staging/checkpoint-N`` and renamed to ``<run>/checkpoint-N``
only when every file (adapter, optimizer, scheduler, RNG, trainer state) is on disk, so a run
killed mid-save leaves at worst a staging directory, which the next start removes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pipesql.storage.files import share_file_modes

STAGING = ".staging"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# What a resumable checkpoint must hold (the weights file depends on PEFT vs full model).
_REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
_WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")


def checkpoint_step(path: str | Path) -> int | None:
    match = _CHECKPOINT.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: str | Path) -> bool:
    path = Path(path)
    return (path.is_dir() and all((path / name).is_file() for name in _REQUIRED)
            and any((path / name).is_file() for name in _WEIGHTS))


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest step first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if checkpoint_step(p) is not None and is_complete(p)]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(run_dir: str | Path, before_step: int | None = None) -> Path | None:
    candidates = [p for p in complete_checkpoints(run_dir) if before_step is None or checkpoint_step(p) < before_step]
    return candidates[-1] if candidates else None


def remove_incomplete(run_dir: str | Path) -> list[Path]:
    """Delete the staging area and any checkpoint directory missing a required file."""
    run_dir = Path(run_dir)
    removed = []
    if not run_dir.is_dir():
        return removed
    for path in [run_dir / STAGING, *(p for p in run_dir.iterdir() if checkpoint_step(p) is not None)]:
        if path.exists() and (path.name == STAGING or not is_complete(path)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def publish(staged: Path, final: Path) -> None:
    """Move a fully written checkpoint into place (replacing one of the same step, which a
    rolled-back run may write again)."""
    share_file_modes(staged)
    if final.exists():
        shutil.rmtree(final)
    staged.rename(final)
    try:  # the staging area, once empty, is not left behind in a finished run
        staged.parent.rmdir()
    except OSError:
        pass  # not empty (another save in flight) or already gone
