"""``pipesql train``: LoRA / QLoRA supervised fine-tuning with TRL.

Importing this package is cheap (settings only); torch, transformers and TRL are imported when a
run starts.
"""

from __future__ import annotations

from pipesql.train.settings import Settings


def run(settings: Settings) -> int:
    from pipesql.train.data import TrainingDataError
    from pipesql.train.runner import run_training

    try:
        return run_training(settings)
    except TrainingDataError as error:  # the message names the file; a traceback would bury it
        raise SystemExit(f"pipesql train: {error}") from None


__all__ = ["Settings", "run"]
