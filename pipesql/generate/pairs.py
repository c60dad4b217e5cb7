"""Golden pairs as the generator reads them, with every unusable line reported and skipped.

A golden pair is one JSONL record written by ``pipesql validate``: at least ``question_id``,
``db_id``, ``difficulty``, ``question``, ``gold_sql`` and ``pipe_sql`` (``evidence`` when BIRD
gives one). Reading never stops at a bad line: it becomes a :class:`Problem` naming the file,
line and question id, and the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pipesql.corpora.items import usable_db_id
from pipesql.storage.files import BadLine, lone_surrogate, read_jsonl, writable

REQUIRED_FIELDS = ("question_id", "db_id", "question", "gold_sql", "pipe_sql")

# Why a pair produced no samples; the keys of ``stats.json``'s ``pairs.skipped``.
MALFORMED_LINE = "malformed_line"
MISSING_FIELD = "missing_field"
NO_QUESTION = "no_question"
DUPLICATE_ID = "duplicate_question_id"
MISSING_DATABASE = "missing_database"
NO_OPERATORS = "no_operators"
PREFIX_FAILED = "prefix_failed"
BAD_DB_ID = "bad_db_id"
BAD_TEXT = "bad_text"


@dataclass(frozen=True)
class GoldenPair:
    line: int
    question_id: str
    db_id: str
    question: str
    gold_sql: str
    pipe_sql: str
    difficulty: str | None = None
    evidence: str | None = None


@dataclass(frozen=True)
class Problem:
    """A golden-pair line that was skipped, and why."""

    path: str
    line: int
    question_id: str | None
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        qid = f" ({self.question_id})" if self.question_id else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.path}:{self.line}{qid}: skipped, {self.reason}{detail}"

    def as_dict(self) -> dict:
        return {"line": self.line, "question_id": self.question_id, "reason": self.reason, "detail": self.detail}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def parse_pair(path: str, line: int, record: dict) -> GoldenPair | Problem:
    """One record as a :class:`GoldenPair`, or the :class:`Problem` that keeps it out."""
    qid = record.get("question_id")
    qid = None if qid is None else writable(str(qid))
    for key, value in record.items():
        if isinstance(value, str) and (position := lone_surrogate(value)) is not None:
            return Problem(path, line, qid, BAD_TEXT, f"{writable(str(key))} holds a lone surrogate at character {position}")
    missing = [key for key in REQUIRED_FIELDS if key not in record]
    if missing:
        return Problem(path, line, qid, MISSING_FIELD, f"no {', '.join(missing)}")
    if _text(record["question"]) is None:
        return Problem(path, line, qid, NO_QUESTION, "question is empty (e.g. Spider train_others)")
    for key in ("db_id", "pipe_sql"):
        if _text(record[key]) is None:
            return Problem(path, line, qid, MISSING_FIELD, f"{key} is empty")
    if not usable_db_id(record["db_id"]):
        return Problem(path, line, qid, BAD_DB_ID, f"db_id {record['db_id']!r} is not a plain database name")
    return GoldenPair(
        line=line,
        question_id=qid or f"line-{line}",
        db_id=record["db_id"],
        question=record["question"].strip(),
        gold_sql=record.get("gold_sql") or "",
        pipe_sql=record["pipe_sql"].strip(),
        difficulty=_text(record.get("difficulty")),
        evidence=_text(record.get("evidence")),
    )


def read_golden_pairs(path: str | Path) -> tuple[int, list[GoldenPair], list[Problem]]:
    """``(lines read, usable pairs in file order, problems)``. A question id seen twice keeps
    its first line; the later ones are problems (their samples would collide)."""
    path = Path(path)
    bad_lines: list[BadLine] = []
    pairs: list[GoldenPair] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for line, record in read_jsonl(path, bad_lines):
        parsed = parse_pair(str(path), line, record)
        if isinstance(parsed, Problem):
            problems.append(parsed)
        elif parsed.question_id in seen:
            problems.append(Problem(str(path), line, parsed.question_id, DUPLICATE_ID, "already seen on an earlier line"))
        else:
            seen.add(parsed.question_id)
            pairs.append(parsed)
    problems += [Problem(bad.path, bad.line, None, MALFORMED_LINE, bad.error) for bad in bad_lines]
    problems.sort(key=lambda p: p.line)
    return len(pairs) + len(problems), pairs, problems


def count_reasons(problems: Iterable[Problem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.reason] = counts.get(problem.reason, 0) + 1
    return dict(sorted(counts.items()))
