"""``pipesql train``: LoRA / QLoRA supervised fine-tuning with TRL.

Importing this package is cheap (settings only); torch, transformers and TRL are imported when a
run starts.
"""

from __future__ import annotations

from pipesql.train.settings import Settings


def run(settings: Settings) -> int:
    from pipesql.train.runner import run_training

    return run_training(settings)


__all__ = ["Settings", "run"]
