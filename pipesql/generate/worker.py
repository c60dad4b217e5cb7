"""The samples of one database's pairs: the unit of work handed to a process.

One :class:`~pipesql.agent.tools.Toolbox` per database holds the read-only connection, and the schema
text is rendered once, so the cost per pair is the round trip and execution of its prefixes.
Tool-calling conversations reuse the prefix results the toolbox cached while checking them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipesql.agent import prompts
from pipesql.generate.pairs import NO_OPERATORS, PREFIX_FAILED, GoldenPair, Problem
from pipesql.generate.split import seeded_fraction
from pipesql.generate.toolchat import ToolChatError, tool_chat_sample
from pipesql.generate.trajectory import operator_kind, trajectory_samples
from pipesql.agent.schema_text import schema_text
from pipesql.sql.execute import DatabaseError
from pipesql.agent.tools import Toolbox, ToolError

UNREADABLE_DATABASE = "unreadable_database"
TOOL_CHAT_FAILED = "tool_chat_failed"


@dataclass(frozen=True)
class WorkOptions:
    golden_pairs: str
    tool_calling: bool
    tool_ratio: float
    seed: int
    timeout_s: float
    values_per_column: int
    schema_max_chars: int
    trim_schema_to_query: bool


@dataclass
class DatabaseWork:
    db_id: str
    db_path: Path
    pairs: list[GoldenPair]


@dataclass
class DatabaseResult:
    db_id: str
    samples: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # line -> samples of that pair
    problems: list[Problem] = field(default_factory=list)  # pairs that gave no samples
    notes: list[Problem] = field(default_factory=list)  # pairs that gave samples but no tool chat
    seconds: float = 0.0


def wants_tool_chat(pair: GoldenPair, options: WorkOptions) -> bool:
    """The seeded choice of pairs that also get a tool-calling sample: depends only on the seed
    and the question id, so ``--limit`` and input order do not change it."""
    return options.tool_calling and seeded_fraction(options.seed, "tools", pair.question_id) < options.tool_ratio


def split_pipe(pipe_sql: str) -> list[str]:
    from pipesql.decompile import split_operators

    return [op for op in (o.strip() for o in split_operators(pipe_sql)) if op]


def first_failing_prefix(operators: list[str], toolbox: Toolbox) -> str | None:
    """Run every prefix through the round trip; describe the first that fails, else None."""
    for length in range(1, len(operators) + 1):
        try:
            toolbox.run_pipe(prompts.join_operators(operators[:length]))
        except ToolError as error:
            kind = operator_kind(operators[length - 1])
            return f"prefix {length}/{len(operators)} (ends with {kind}): {error}"
    return None


def prompt_schema(pair: GoldenPair, db_path: Path, options: WorkOptions) -> str:
    """The whole schema (what the model sees at inference) unless trimming was asked for; a
    gold query that does not parse falls back to the whole schema."""
    if options.trim_schema_to_query and pair.gold_sql:
        try:
            return schema_text(db_path, values_per_column=options.values_per_column,
                               max_chars=options.schema_max_chars, trim_to_query=pair.gold_sql)
        except ValueError:
            pass
    return schema_text(db_path, values_per_column=options.values_per_column, max_chars=options.schema_max_chars)


def pair_samples(pair: GoldenPair, toolbox: Toolbox, options: WorkOptions, result: DatabaseResult) -> None:
    path = options.golden_pairs
    try:
        operators = split_pipe(pair.pipe_sql)
    except Exception as error:  # the splitter's parse errors, whatever their type
        result.problems.append(Problem(path, pair.line, pair.question_id, NO_OPERATORS, f"cannot split: {error}"))
        return
    if not operators:
        result.problems.append(Problem(path, pair.line, pair.question_id, NO_OPERATORS, "pipe_sql has no operators"))
        return
    failure = first_failing_prefix(operators, toolbox)
    if failure:
        result.problems.append(Problem(path, pair.line, pair.question_id, PREFIX_FAILED, failure))
        return
    schema = prompt_schema(pair, toolbox.db_path, options)
    samples = trajectory_samples(pair, operators, schema)
    if wants_tool_chat(pair, options):
        try:
            samples.append(tool_chat_sample(pair, operators, toolbox))
        except ToolChatError as error:
            result.notes.append(Problem(path, pair.line, pair.question_id, TOOL_CHAT_FAILED, str(error)))
    result.samples[pair.line] = samples


def generate_for_database(work: DatabaseWork, options: WorkOptions) -> DatabaseResult:
    start = time.monotonic()
    result = DatabaseResult(work.db_id)
    try:
        schema_text(work.db_path, values_per_column=options.values_per_column, max_chars=options.schema_max_chars)
    except DatabaseError as error:
        result.problems += [Problem(options.golden_pairs, p.line, p.question_id, UNREADABLE_DATABASE, str(error))
                            for p in work.pairs]
        return result
    with Toolbox(work.db_path, timeout_s=options.timeout_s) as toolbox:
        for pair in work.pairs:
            pair_samples(pair, toolbox, options, result)
    result.seconds = time.monotonic() - start
    return result


def run_task(task: tuple[DatabaseWork, WorkOptions]) -> DatabaseResult:
    """Pool entry point (one picklable argument)."""
    return generate_for_database(*task)
