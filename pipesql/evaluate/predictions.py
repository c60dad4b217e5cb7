"""Predictions made elsewhere, read from a JSONL file (``pipesql evaluate --predictions FILE``).

One JSON object a line: ``question_id`` (the benchmark's id as pipesql names it, e.g.
``dev-00012`` for Spider, ``dev-1471`` for BIRD; see ``eval_results.jsonl``) and the query under
``sql`` (``pipe_sql`` and ``prediction`` are read too), pipe SQL or standard SQL. This is how
Spider's and BIRD's official scripts take a model's output, so another system's predictions are
scored exactly as pipesql's own: execution accuracy and test-suite accuracy.

A bad line (not JSON, no ``question_id``, no query text, an id the benchmark does not have, an
id given twice) is reported naming the file and line, and the rest is read; a question without a
prediction is scored ``no_prediction``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

from pipesql.storage.files import BadLine, read_jsonl

QUERY_KEYS = ("sql", "pipe_sql", "prediction")


@dataclass
class PredictionFile:
    queries: dict[str, str] = field(default_factory=dict)  # question_id -> query text
    problems: list[BadLine] = field(default_factory=list)


def read_predictions(path: str | Path, question_ids: Collection[str]) -> PredictionFile:
    """The queries of ``path`` for the benchmark questions ``question_ids``, and its bad lines."""
    read = PredictionFile()
    first_line: dict[str, int] = {}
    for number, record in read_jsonl(path, read.problems):
        problem = _problem(record, question_ids, first_line)
        if problem is not None:
            read.problems.append(BadLine(str(path), number, problem))
            continue
        question_id = str(record["question_id"])
        first_line[question_id] = number
        read.queries[question_id] = next(record[k] for k in QUERY_KEYS if isinstance(record.get(k), str))
    read.problems.sort(key=lambda bad: bad.line)
    return read


def _problem(record: dict, question_ids: Collection[str], first_line: dict[str, int]) -> str | None:
    question_id = record.get("question_id")
    if not isinstance(question_id, (str, int)) or isinstance(question_id, bool) or str(question_id) == "":
        return "no question_id (a string such as \"dev-00012\")"
    question_id = str(question_id)
    if question_id not in question_ids:
        return f"question_id {question_id!r} is not a question of this benchmark split"
    if question_id in first_line:
        return f"question_id {question_id!r} given again (first on line {first_line[question_id]})"
    if not any(isinstance(record.get(k), str) for k in QUERY_KEYS):
        return f"no query text under {' / '.join(QUERY_KEYS)}"
    return None
