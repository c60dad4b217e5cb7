"""Next-operator accuracy on dev trajectories: what a small or briefly trained model has learned
before it can write whole queries.

Each step sample of ``pipesql generate``'s dev.jsonl (question, schema, the query so far) has one
right answer, the next operator or the end marker. The model answers each greedily, and we count

* ``exact``: the answer is that operator (whitespace aside) or the end marker where it is due;
* ``kind``: it is an operator of the right kind (``WHERE`` for ``WHERE``, ``JOIN`` for any join);
* ``parses``: the answer is one operator of any kind or the end marker, not prose or a whole query;
* ``end_marker``: the share of answers that are the end marker (a model that stops at step 1
  shows here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pipesql.agent.prompts import END_MARKER
from pipesql.evaluate.answers import parse_step
from pipesql.evaluate.predict import STEP_STOP, complete_in_batches
from pipesql.generate.trajectory import END, STEP, operator_kind
from pipesql.models.backends import Backend, Chat, SamplingParams
from pipesql.storage.files import read_jsonl


def step_samples(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The step and end samples of a training-data file (tool-calling chats are not steps)."""
    rows = [row for _, row in read_jsonl(Path(path)) if row.get("kind") in (STEP, END)]
    return rows[:limit] if limit else rows


def _normalized(text: str) -> str:
    return " ".join(text.split()).lower()


def judge(answer: str, gold: str) -> dict[str, bool]:
    step = parse_step(answer)
    said_end = step.finished and step.operator is None
    if gold.strip() == END_MARKER:
        return {"exact": said_end, "kind": said_end, "parses": said_end or _one_operator(step.operator),
                "end_marker": said_end}
    operator = step.operator or ""
    return {"exact": _normalized(operator) == _normalized(gold), "kind": bool(operator) and
            operator_kind(operator) == operator_kind(gold), "parses": said_end or _one_operator(step.operator),
            "end_marker": said_end}


def _one_operator(operator: str | None) -> bool:
    """One pipe operator: a known keyword first, and no second ``|>`` after it."""
    if not operator:
        return False
    body = operator.strip()
    return operator_kind(body) != "OTHER" and "|>" not in body.lstrip("|>").strip()


def next_operator_accuracy(samples: Sequence[dict[str, Any]], backend: Backend, *, max_new_tokens: int = 128,
                           batch_size: int = 16) -> dict[str, Any]:
    """Shares of ``exact`` / ``kind`` / ``parses`` / ``end_marker`` answers over ``samples``."""
    chats = [Chat.of(row["messages"][:-1]) for row in samples]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, stop=STEP_STOP)
    completions, _ = complete_in_batches(backend, chats, params, batch_size)
    verdicts = [judge(c.text, row["messages"][-1]["content"]) for c, row in zip(completions, samples)]
    total = len(verdicts)

    def share(key: str) -> float:
        return sum(v[key] for v in verdicts) / total if total else 0.0

    gold_ends = sum(1 for row in samples if row["messages"][-1]["content"].strip() == END_MARKER)
    return {"samples": total, "gold_end_markers": gold_ends, "exact": share("exact"), "kind": share("kind"),
            "parses": share("parses"), "end_marker": share("end_marker")}
