"""The divergence guard: decide, once per optimizer step, whether training has gone wrong.

A step is bad when its loss or gradient norm is not finite, or when its loss jumps above
``spike_factor`` times the running median of recent good steps (after ``warmup`` steps, so the
steep early descent is not mistaken for trouble). The trainer then skips the optimizer step,
stops, and the runner rolls back to the last good checkpoint with a lower learning rate. The
replaced system's 7B run went 0.25 -> 0.87 -> 2.15 -> ... -> NaN over 70 steps; with the default
factor 3 the guard fires at the second of those steps, before the weights are lost.

Every decision is appended to ``stability_events.jsonl`` in the run directory, which is also
what a restarted run reads to know how many rollbacks (and so which learning rate) it is at.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipesql.storage.files import atomic_open, read_jsonl

EVENTS_NAME = "stability_events.jsonl"


@dataclass
class StabilityGuard:
    spike_factor: float = 3.0
    window: int = 50
    warmup: int = 20
    history: deque = field(default_factory=deque)
    good_steps: int = 0

    def check(self, step: int, loss: float, grad_norm: float | None) -> dict[str, Any] | None:
        """None when the step is fine (and it joins the history); else a description of why not."""
        reason = None
        median = statistics.median(self.history) if self.history else None
        if not math.isfinite(loss):
            reason = "non-finite loss"
        elif grad_norm is not None and not math.isfinite(grad_norm):
            reason = "non-finite gradient norm"
        elif (self.good_steps >= self.warmup and median is not None and median > 0
              and loss > self.spike_factor * median):
            reason = f"loss spike (> {self.spike_factor:g} x running median)"
        if reason is None:
            self.history.append(loss)
            while len(self.history) > self.window:
                self.history.popleft()
            self.good_steps += 1
            return None
        return {"step": step, "reason": reason, "loss": _jsonable(loss), "grad_norm": _jsonable(grad_norm),
                "running_median": median}

    def state(self) -> dict[str, Any]:
        return {"history": list(self.history), "good_steps": self.good_steps}

    def load_state(self, state: dict[str, Any]) -> None:
        self.history = deque(state.get("history", [])[-self.window:])
        self.good_steps = int(state.get("good_steps", 0))


def _jsonable(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return str(value)  # "nan" / "inf": JSON has no such numbers


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / EVENTS_NAME
    if not path.is_file():
        return []
    return [record for _, record in read_jsonl(path)]


def append_event(run_dir: str | Path, event: dict[str, Any]) -> None:
    """Rewrite the whole (small) file atomically, so a crash never leaves half a line."""
    events = read_events(run_dir) + [{"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}]
    with atomic_open(Path(run_dir) / EVENTS_NAME) as handle:
        for item in events:
            handle.write(json.dumps(item, sort_keys=True) + "\n")


def rollbacks_done(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if e.get("action") == "rollback")


def learning_rate_after(base_lr: float, backoff: float, events: list[dict[str, Any]]) -> float:
    return base_lr * backoff ** rollbacks_done(events)
