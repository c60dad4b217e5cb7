"""Incremental trajectories: an N-operator pipe query becomes N + 1 chat samples.

Sample k (0-based) shows the question, the schema and the first k operators ("the query so
far") and answers with operator k; the last sample shows the whole query and answers with
:data:`pipesql.agent.prompts.END_MARKER`, so an agent learns when to stop::

    FROM singer                      <- answer of step 0 (query so far: "(empty)")
    |> WHERE age > 30                <- answer of step 1
    |> AGGREGATE COUNT(*) AS n       <- answer of step 2
    -- done                          <- answer of the end sample
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from pipesql.agent import prompts
from pipesql.generate.pairs import GoldenPair

STEP = "step"
END = "end"
TOOLS = "tools"
SAMPLE_KINDS = (STEP, END, TOOLS)

# Longest first: "LEFT OUTER JOIN" must win over "JOIN", "ORDER BY" over "ORDER".
_OPERATOR_KINDS = (
    ("WITH", r"WITH"), ("FROM", r"FROM"),
    ("JOIN", r"(?:(?:LEFT|RIGHT|FULL)(?:\s+OUTER)?\s+|INNER\s+|CROSS\s+|NATURAL\s+)?JOIN"),
    ("WHERE", r"WHERE"), ("SELECT", r"SELECT"), ("EXTEND", r"EXTEND"), ("AGGREGATE", r"AGGREGATE"),
    ("ORDER BY", r"ORDER\s+BY"), ("LIMIT", r"LIMIT"), ("DISTINCT", r"DISTINCT"),
    ("UNION", r"UNION"), ("INTERSECT", r"INTERSECT"), ("EXCEPT", r"EXCEPT"), ("AS", r"AS"),
    ("SET", r"SET"), ("DROP", r"DROP"), ("RENAME", r"RENAME"), ("WINDOW", r"WINDOW"),
    ("PIVOT", r"PIVOT"), ("UNPIVOT", r"UNPIVOT"), ("TABLESAMPLE", r"TABLESAMPLE"), ("CALL", r"CALL"),
)
_KIND_PATTERNS = [(kind, re.compile(rf"(?:\|>\s*)?{pattern}\b", re.IGNORECASE)) for kind, pattern in _OPERATOR_KINDS]


def operator_kind(operator: str) -> str:
    """The operator's keyword (``FROM``, ``WHERE``, ``AGGREGATE``, ``JOIN``, ``ORDER BY`` ...);
    ``OTHER`` when none matches. Every kind of join counts as ``JOIN``."""
    text = operator.lstrip()
    for kind, pattern in _KIND_PATTERNS:
        if pattern.match(text):
            return kind
    return "OTHER"


def sample_record(pair: GoldenPair, kind: str, messages: list[dict[str, Any]], *, step: int | None = None,
                  operator: str | None = None, pattern: str | None = None, tools: str | None = None) -> dict[str, Any]:
    """One output row. ``tools`` is the tool specs as a JSON string, or None."""
    suffix = f"{kind}-{step:02d}" if kind == STEP else kind
    # Every row carries the same keys, so JSON loaders infer one schema for mixed files.
    return {
        "id": f"{pair.question_id}:{suffix}",
        "kind": kind,
        "question_id": pair.question_id,
        "db_id": pair.db_id,
        "difficulty": pair.difficulty,
        "step": step,
        "operator": operator,
        "pattern": pattern,
        "messages": messages,
        "tools": tools,
    }


def trajectory_samples(pair: GoldenPair, operators: Sequence[str], schema_text: str) -> list[dict[str, Any]]:
    """The N step samples and the end sample of one pair whose prefixes all executed."""
    samples = []
    for index in range(len(operators) + 1):
        so_far = prompts.join_operators(operators[:index])
        answer = operators[index].strip() if index < len(operators) else prompts.END_MARKER
        messages = [
            {"role": "system", "content": prompts.STEP_SYSTEM_PROMPT},
            {"role": "user", "content": prompts.step_user_message(pair.question, schema_text, so_far, pair.evidence)},
            {"role": "assistant", "content": answer},
        ]
        if index < len(operators):
            samples.append(sample_record(pair, STEP, messages, step=index, operator=operator_kind(answer)))
        else:
            samples.append(sample_record(pair, END, messages, step=index))
    return samples
