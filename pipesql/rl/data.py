"""Golden pairs -> GRPO prompts, each with the target its completions are scored against.

The prompts are the ones evaluation asks (:func:`pipesql.evaluate.predict.oneshot_chat` and
:func:`~pipesql.evaluate.predict.step_chat`), so what GRPO rewards is what evaluation measures.

- one-shot: one prompt per pair; the target is the pair's gold SQL.
- step: one prompt per operator of the gold pipe query, plus one after the last: the query so
  far is the gold prefix of k operators, and the target is the prefix of k + 1 operators
  (transpiled to SQLite), or, after the last, the gold SQL itself, where the right answer is the
  end marker. A step is rewarded when the query it makes returns what the gold's next prefix
  returns: any operator that gets there counts, not only the gold's own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipesql.agent.prompts import join_operators
from pipesql.corpora.items import Item, database_dirs, find_database
from pipesql.evaluate.predict import oneshot_chat, step_chat
from pipesql.evaluate.scoring import transpile
from pipesql.generate.pairs import MISSING_DATABASE, PREFIX_FAILED, GoldenPair, Problem, read_golden_pairs
from pipesql.generate.worker import split_pipe
from pipesql.rl.reward import ONESHOT, PROMPT_FORMATS

log = logging.getLogger(__name__)

COLUMNS = ("prompt", "question_id", "db_path", "gold_sql", "prefix")


def _row(item: Item, chat, gold_sql: str, prefix: str) -> dict[str, Any]:
    return {"prompt": [dict(m) for m in chat.messages], "question_id": item.question_id,
            "db_path": str(item.db_path), "gold_sql": gold_sql, "prefix": prefix}


def oneshot_rows(item: Item, schema: str) -> list[dict[str, Any]]:
    return [_row(item, oneshot_chat(item, schema), item.gold_sql, "")]


def step_rows(item: Item, schema: str, operators: list[str]) -> list[dict[str, Any]]:
    """One row per step; raises when a gold prefix does not transpile (the pair is skipped)."""
    rows = []
    for done in range(len(operators) + 1):
        prefix = join_operators(operators[:done])
        target = item.gold_sql if done == len(operators) else transpile(join_operators(operators[:done + 1]))
        rows.append(_row(item, step_chat(item, schema, prefix), target, prefix))
    return rows


def _item(pair: GoldenPair, db_path: Path) -> Item:
    return Item(question_id=pair.question_id, db_id=pair.db_id, question=pair.question, gold_sql=pair.gold_sql,
                db_path=db_path, difficulty=pair.difficulty, evidence=pair.evidence)


def build_rows(golden_pairs: str | Path, db_dirs: list[Path], prompt_format: str,
               limit: int | None = None) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Prompt rows (columns :data:`COLUMNS`) in file order, and the pairs skipped with why."""
    from pipesql.agent.schema_text import schema_text

    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {prompt_format!r}; choose from {PROMPT_FORMATS}")
    _, pairs, problems = read_golden_pairs(golden_pairs)
    pairs = pairs[:limit] if limit else pairs
    schemas: dict[Path, str] = {}
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        db_path = find_database(db_dirs, pair.db_id)
        if db_path is None:
            problems.append(Problem(str(golden_pairs), pair.line, pair.question_id, MISSING_DATABASE,
                                    f"no {pair.db_id}/{pair.db_id}.sqlite in {', '.join(map(str, db_dirs))}"))
            continue
        if db_path not in schemas:
            schemas[db_path] = schema_text(db_path)
        item = _item(pair, db_path)
        if prompt_format == ONESHOT:
            rows += oneshot_rows(item, schemas[db_path])
            continue
        try:
            rows += step_rows(item, schemas[db_path], split_pipe(pair.pipe_sql))
        except Exception as error:  # sqlglot raises several unrelated types on bad input
            problems.append(Problem(str(golden_pairs), pair.line, pair.question_id, PREFIX_FAILED,
                                    f"{type(error).__name__}: {error}"))
    for problem in problems[:5]:
        log.warning("%s", problem)
    return rows, problems


def load_prompts(settings) -> tuple[Any, dict[str, Any]]:
    """A ``datasets.Dataset`` of prompt rows for ``settings`` and a description for the summary."""
    from datasets import Dataset

    path = Path(settings.golden_pairs)
    if not path.is_file():
        raise SystemExit(f"pipesql rl: golden pairs not found: {path} (write them with `pipesql validate`)")
    rows, problems = build_rows(path, database_dirs(settings.benchmark, settings.data_dir), settings.prompt_format,
                                settings.limit)
    if not rows:
        raise SystemExit(f"pipesql rl: no usable prompts in {path} ({len(problems)} pairs skipped)")
    stats = {"path": str(path), "prompt_format": settings.prompt_format, "prompts": len(rows),
             "pairs_skipped": len(problems), "skipped_examples": [str(p) for p in problems[:10]]}
    return Dataset.from_list(rows), stats
