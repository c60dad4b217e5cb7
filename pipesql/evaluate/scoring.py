"""Score one predicted pipe query against its gold SQL by execution.

The prediction is round-tripped to SQLite exactly as validation does (``pipe_to_sqlite``), run
read-only with a time limit and a row cap (in a child process killed at the limit:
:mod:`pipesql.sql.isolated`), and compared with the gold result by
:mod:`pipesql.sql.compare` (tie-aware; row order matters only when the gold query orders its output). A prediction
cannot fail as a whole batch: every failure becomes a status with a detail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from pipesql.corpora.items import Item
from pipesql.sql.execute import DatabaseError, QueryError, QueryResult, QueryTimeout, execute
from pipesql.sql.isolated import call_isolated, connect_isolated

MATCH = "match"
MISMATCH = "mismatch"
EXEC_ERROR = "exec_error"
TRANSPILE_ERROR = "transpile_error"
NO_PREDICTION = "no_prediction"
# The gold query itself failed (a broken benchmark item or database): no prediction can match,
# and the item still counts in the denominator so accuracy is never flattered.
GOLD_ERROR = "gold_error"

# Beyond the variants' query budget, for the child's first imports and reading the database's
# value pools.
VARIANTS_SLACK_S = 10.0

STATUSES = (MATCH, MISMATCH, EXEC_ERROR, TRANSPILE_ERROR, NO_PREDICTION, GOLD_ERROR)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 30.0
    row_cap: int = 100_000
    # Test-suite accuracy: a match must also agree with the gold on this many generated
    # variants of the database (pipesql.validate.variants; 0: execution accuracy only).
    variants: int = 0
    # Predictions made elsewhere (--predictions) may be standard SQL: such a query runs as it is.
    standard_sql: bool = False


@dataclass(frozen=True)
class Score:
    status: str
    detail: str = ""
    sqlite_sql: str | None = None  # the prediction as run on SQLite
    timings: dict[str, float] = field(default_factory=dict)
    # Test-suite verdict of a match (None: not asked, or no match): False when a variant refutes it.
    test_suite: bool | None = None
    test_suite_detail: str = ""


def _run(conn, sql: str, limits: Limits) -> QueryResult:
    return execute(conn, sql, timeout_s=limits.timeout_s, row_cap=limits.row_cap)


def is_pipe_sql(query: str) -> bool:
    """Pipe SQL starts with FROM or has a pipe operator; anything else is read as SQLite SQL
    (predictions made elsewhere may be standard SQL, as Spider's and BIRD's gold is)."""
    from pipesql.sql.transpile import Tokenizer

    try:
        tokens = Tokenizer().tokenize(query)
    except Exception:  # noqa: BLE001 - untokenizable text: let the pipe translator name the error
        return True
    return bool(tokens) and (tokens[0].text.upper() == "FROM" or any(t.text == "|>" for t in tokens))


def transpile(query: str, *, standard_sql: bool = False) -> str:
    """The SQLite text of a prediction: pipe SQL translated; with ``standard_sql``, a query that
    is not pipe SQL runs as it is."""
    from pipesql.sql.transpile import pipe_to_sqlite

    return query if standard_sql and not is_pipe_sql(query) else pipe_to_sqlite(query)


def compare_to_gold(item: Item, gold: QueryResult, predicted: QueryResult, conn, limits: Limits) -> tuple[bool, str]:
    """``(match, detail)`` by :func:`pipesql.sql.compare.compare_results`: order counts when the gold
    orders its output, and rows tied on the gold's order key may come in any order and choice
    (the tie probe re-runs on the gold's database, under the same limits)."""
    from pipesql.sql.compare import compare_results

    def rerun(sql: str):
        return _run(conn, sql, limits).rows

    verdict = compare_results(item.gold_sql, gold.rows, predicted.rows, rerun)
    if verdict.match:
        return True, "matched only when tied rows are read as interchangeable" if verdict.tie_aware else ""
    return False, f"{verdict.subclass}: {verdict.detail}" if verdict.detail else str(verdict.subclass)


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def score(item: Item, prediction: str | None, *, limits: Limits = Limits(), conn=None) -> Score:
    """The status of one prediction. Never raises for a bad prediction or database: every
    failure becomes a status with a detail naming it."""
    return score_many(item, [prediction], limits=limits, conn=conn)[0]


class _Gold:
    """An item's database and gold result, opened and run once, when a prediction first needs
    them: a prediction that does not transpile never touches the database."""

    def __init__(self, item: Item, limits: Limits, conn=None):
        self.item, self.limits, self.conn = item, limits, conn
        self.own_conn = conn is None
        self.result: QueryResult | None = None
        self.error: tuple[str, str] | None = None  # (status, detail) when it cannot be had
        self.seconds = 0.0
        self._tried = False

    def get(self) -> QueryResult | None:
        if not self._tried:
            self._tried = True
            try:
                if self.own_conn:  # a model's SQL: in a child process killed at the time limit
                    self.conn = connect_isolated(self.item.db_path)
            except DatabaseError as error:
                self.error = (GOLD_ERROR, f"{self.item.question_id}: {_describe(error)}")
                return None
            start = time.monotonic()
            try:
                self.result = _run(self.conn, self.item.gold_sql, self.limits)
            except QueryError as error:
                self.error = (GOLD_ERROR, f"gold query failed: {_describe(error)}")
            self.seconds = time.monotonic() - start
        return self.result

    def close(self) -> None:
        if self.own_conn and self.conn is not None:
            self.conn.close()


def score_many(item: Item, predictions: Sequence[str | None], *, limits: Limits = Limits(), conn=None) -> list[Score]:
    """:func:`score` of several predictions for one item (GRPO's group of samples for one
    prompt): each gets the status it would get alone, but the database is opened and the gold
    query run once for all of them."""
    gold = _Gold(item, limits, conn)
    try:
        return [_score_one(item, prediction, gold, limits) for prediction in predictions]
    finally:
        gold.close()


def _score_one(item: Item, prediction: str | None, gold_source: _Gold, limits: Limits) -> Score:
    timings: dict[str, float] = {}
    if not prediction or not prediction.strip():
        return Score(NO_PREDICTION, "the model gave no query")
    start = time.monotonic()
    try:
        sqlite_sql = transpile(prediction, standard_sql=limits.standard_sql)
    except Exception as error:  # sqlglot raises several unrelated types on bad input
        return Score(TRANSPILE_ERROR, f"{type(error).__name__}: {_describe(error)}",
                     timings={"transpile_s": time.monotonic() - start})
    timings["transpile_s"] = time.monotonic() - start
    gold = gold_source.get()
    if gold is None:
        return Score(*gold_source.error, sqlite_sql, timings)
    timings["gold_s"] = gold_source.seconds
    conn = gold_source.conn
    start = time.monotonic()
    try:
        predicted = _run(conn, sqlite_sql, limits)
    except QueryTimeout as error:
        return Score(EXEC_ERROR, f"timeout: {_describe(error)}", sqlite_sql,
                     {**timings, "execute_s": time.monotonic() - start})
    except QueryError as error:
        return Score(EXEC_ERROR, _describe(error), sqlite_sql, {**timings, "execute_s": time.monotonic() - start})
    timings["execute_s"] = predicted.seconds
    start = time.monotonic()
    match, reason = compare_to_gold(item, gold, predicted, conn, limits)
    timings["compare_s"] = time.monotonic() - start
    if predicted.truncated and not match:
        reason = f"{reason} (prediction cut at the {limits.row_cap}-row cap)".strip()
    if not match or limits.variants <= 0:
        return Score(MATCH if match else MISMATCH, reason, sqlite_sql, timings)
    start = time.monotonic()
    test_suite, detail = agrees_on_variants(item, sqlite_sql, limits.variants)
    timings["variants_s"] = time.monotonic() - start
    return Score(MATCH, reason, sqlite_sql, timings, test_suite, detail)


def agrees_on_variants(item: Item, sqlite_sql: str, count: int) -> tuple[bool, str]:
    """Test-suite accuracy's second half (Zhong, Yu & Klein, 2020): ``(agrees, detail)`` of a
    prediction that matched on the database, run on the ``count`` variants validation builds.

    The whole check runs in a child process killed past the variants' budget: the variants are
    in-memory databases the prediction runs on, and work inside one SQLite step (which the
    per-query limit does not reach) must not outlast it. A prediction that runs past it disagrees."""
    from pipesql.validate.variants import variants_budget_s

    try:
        return call_isolated(_variant_verdict, str(item.db_path), item.gold_sql, sqlite_sql, count,
                             timeout_s=variants_budget_s(count) + VARIANTS_SLACK_S)
    except QueryError as error:
        return False, f"variants: {_describe(error)}"


def _variant_verdict(db_path: str, gold_sql: str, sqlite_sql: str, count: int) -> tuple[bool, str]:
    """:func:`agrees_on_variants`' work, in the child process."""
    from pipesql.validate.variants import first_disagreement

    witness = first_disagreement(db_path, gold_sql, [sqlite_sql], count=count)[0]
    if witness is None:
        return True, ""
    witness.connection.close()
    return False, f"variant {witness.index}: {witness.subclass}: {witness.detail}"[:500]
