"""Read a pipe query out of what a model wrote.

Models trained on our data answer with bare pipe SQL, but base models (and fine-tuned ones on
an off day) wrap it in a Markdown fence, add a trailing semicolon or echo the end marker. These
functions undo exactly that and nothing more: a prediction is never repaired into a better one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipesql.agent.prompts import END_MARKER

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def unfence(text: str) -> str:
    """The body of the first Markdown code block, or the text itself when there is none."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def _clean(text: str) -> str:
    text = text.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def extract_query(text: str | None) -> str:
    """The whole pipe query of a one-shot answer ("" when there is none): the first code block
    if any, cut at the end marker, without a trailing semicolon."""
    if not text:
        return ""
    body = unfence(text)
    lines = []
    for line in body.splitlines():
        if line.strip() == END_MARKER:
            break
        lines.append(line.rstrip())
    return _clean("\n".join(lines))


@dataclass(frozen=True)
class Step:
    """One agent step as the model answered it: the operator it added (``None`` when it added
    none) and whether it said the query is finished."""

    operator: str | None
    finished: bool


def parse_step(text: str | None) -> Step:
    """The next operator of a step answer. An answer is exactly one operator, or the end marker;
    an operator followed by the end marker adds the operator and finishes."""
    body = unfence(text or "").strip()
    if body.startswith(END_MARKER):
        return Step(None, True)
    kept, finished = [], False
    for line in body.splitlines():
        if line.strip() == END_MARKER:
            finished = True
            break
        kept.append(line.rstrip())
    operator = _clean("\n".join(kept))
    return Step(operator or None, finished)
