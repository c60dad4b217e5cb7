"""``pipesql rl``: GRPO after SFT, with an execution-match reward (docs/rl.md).

Importing this package is cheap (settings only); torch, transformers and TRL are imported when a
run starts. ``run(settings)`` is the whole stage, for the CLI and for campaign scripts alike.
"""

from __future__ import annotations

from pipesql.rl.settings import Settings


def run(settings: Settings) -> int:
    from pipesql.rl.runner import run_grpo

    return run_grpo(settings)


__all__ = ["Settings", "run"]
