"""Validate one benchmark item: gold SQL → pipe SQL → SQLite again, proved by execution.

For an item: open its database read-only; execute the gold SQL (time limit, row cap);
decompile it against the database's schema; translate the pipe SQL back to SQLite
(:func:`pipesql.sql.transpile.pipe_to_sqlite`); execute that; compare the two results as execution
evaluation does (:func:`pipesql.sql.compare.compare_results`, tie-aware). Then ask GoogleSQL
(ZetaSQL) whether it accepts the pipe SQL and, for small databases, whether it computes the
gold's result too.

Every outcome is a record (a plain dict, JSON-ready); nothing raises for a bad item.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlglot
from sqlglot import exp

from pipesql.config.settings import option
from pipesql.corpora.items import Item
from pipesql.sql.googlesql import DEFAULT_MAX_WORK
from pipesql.decompile import PreparedSchema, prepare_schema
from pipesql.validate.plans import second_plan
from pipesql.validate.variants import (DEFAULT_ROWS, DEFAULT_VARIANTS, Disagreement, first_disagreement,
                                       variants_budget_s)
from pipesql.sql.schema import DatabaseSchema, schema_from_connection
from pipesql.sql.execute import (DEFAULT_ROW_CAP, DEFAULT_TIMEOUT_S, DatabaseError, QueryError, QueryResult,
                             QueryTimeout, connect_readonly, execute)
from pipesql.sql.identifiers import sqlite_identifier

# Classes of a validation record.
MATCH = "MATCH"
MISMATCH = "MISMATCH"
VARIANT_MISMATCH = "VARIANT_MISMATCH"  # matched on the database, disagreed on a generated variant of it
DECOMPILE_FAIL = "DECOMPILE_FAIL"
RT_ERROR = "RT_ERROR"          # the round trip failed: pipe SQL did not transpile or execute
GOLD_ERROR = "GOLD_ERROR"      # the gold SQL itself fails on SQLite (malformed SQL included)
GOLD_UNDEFINED = "GOLD_UNDEFINED"  # the gold SQL runs on SQLite, but SQL does not define its result
# the gold returns other rows under another legal plan (pipesql.validate.plans): both kept as witness
GOLD_NONDETERMINISTIC = "GOLD_NONDETERMINISTIC"
TIMEOUT = "TIMEOUT"            # gold or round trip ran past the time limit, or the whole check past its budget
DB_MISSING = "DB_MISSING"      # the item's database file does not exist
DB_CORRUPT = "DB_CORRUPT"      # the file is there but is not a readable SQLite database
NOT_A_QUERY = "NOT_A_QUERY"    # the gold SQL is DML/DDL (DELETE, INSERT, CREATE ...), not a query
INTERNAL_ERROR = "INTERNAL_ERROR"  # a bug in pipesql; the item is kept with its traceback text
BAD_ITEM = "BAD_ITEM"          # the benchmark entry itself is malformed (no SQL, SQL not text, no db_id)
CLASSES = (MATCH, MISMATCH, VARIANT_MISMATCH, DECOMPILE_FAIL, RT_ERROR, GOLD_ERROR, GOLD_UNDEFINED,
           GOLD_NONDETERMINISTIC, TIMEOUT,
           DB_MISSING, DB_CORRUPT, NOT_A_QUERY, BAD_ITEM, INTERNAL_ERROR)
# Decompiler refusals that are the gold's fault: ``SELECT DISTINCT a ... ORDER BY b`` with ``b``
# neither selected nor determined by what is (standard SQL, PostgreSQL and GoogleSQL reject it;
# SQLite orders each ``a`` by the ``b`` of whichever row it scanned first). No query in any other
# engine has that result, so the item is an input problem, like gold SQL that fails.
UNDEFINED_GOLD_REASONS = ("unsupported:distinct_order_by_scan_order",)
# Classes for which the gold SQL executed: the denominator of the match rate.
GOLD_EXECUTED = (MATCH, MISMATCH, VARIANT_MISMATCH, DECOMPILE_FAIL, RT_ERROR)

_QUERY_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
# The derived item budget (CheckOptions.item_budget_s): a check runs at most this many queries
# under ``timeout_s`` (gold, round trip, the comparison's reruns, the second plan), the variants'
# own budget, plus slack for opening the database, decompiling and ZetaSQL.
ITEM_QUERIES = 6
ITEM_SLACK_S = 10.0


@dataclass
class CheckOptions:
    """How one item is proven: the limits of each execution, the GoogleSQL (ZetaSQL) check and the
    generated variants. ``pipesql validate``'s settings extend it, so the stage hands its settings
    to the check as they are."""

    timeout_s: float = option(DEFAULT_TIMEOUT_S, "Time limit per SQL execution, seconds.")
    row_cap: int = option(DEFAULT_ROW_CAP, "Most rows read from one result.")
    googlesql: bool = option(True, "Check every pipe query with GoogleSQL (ZetaSQL) too.")
    googlesql_execute_rows: int = option(5_000, "Execute on ZetaSQL too when the database has at most this many "
                                                "rows (its reference engine is slow; 0: never).")
    googlesql_timeout_s: float = option(2.0, "Time limit per ZetaSQL execution, seconds.")
    googlesql_max_work: int = option(DEFAULT_MAX_WORK, "Analyze only (do not execute on ZetaSQL) a query predicted to "
                                                       "visit more rows than this (0: no bound).")
    variants: int = option(DEFAULT_VARIANTS, "Also prove each match on this many generated variants of its database "
                                             "(0: only on the database itself).")
    variant_rows: int = option(DEFAULT_ROWS, "Most rows per table in a variant.")
    item_timeout_s: float = option(0.0, "Most seconds one item's whole check may take: past it the worker is killed "
                                        "and the item classed TIMEOUT (0: derived from the other limits).")

    def item_budget_s(self) -> float:
        """``item_timeout_s``, or the most time an item's limited steps may add up to: the time
        limit per query does not reach inside one SQLite VM step, this one does (a killed worker)."""
        if self.item_timeout_s > 0:
            return self.item_timeout_s
        return (ITEM_QUERIES * self.timeout_s + 2 * self.googlesql_timeout_s
                + variants_budget_s(self.variants) + ITEM_SLACK_S)

    def key(self) -> tuple:
        """The options as a check depends on them (a subclass's other settings do not count)."""
        return tuple(getattr(self, field.name) for field in dataclasses.fields(CheckOptions))


@dataclass(frozen=True)
class OpenDatabase:
    """One database as validation uses it, built once per process and database."""

    connection: sqlite3.Connection
    schema: DatabaseSchema
    total_rows: int
    table_rows: dict[str, int]
    decompile_schema: PreparedSchema  # the decompiler's normalised schema, catalog and keys


class DatabaseCache:
    """Per-process cache of open read-only databases (LRU)."""

    def __init__(self, size: int = 8):
        self._size = size
        self._open: OrderedDict[Path, OpenDatabase] = OrderedDict()

    def get(self, path: Path) -> OpenDatabase:
        """Raises :class:`DatabaseError` when the file is not a readable database."""
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        conn = connect_readonly(path)
        try:
            schema = schema_from_connection(conn)
            table_rows = {t.name: conn.execute(f"SELECT count(*) FROM {sqlite_identifier(t.name)}").fetchone()[0]
                          for t in schema.tables}
        except sqlite3.DatabaseError as error:
            conn.close()
            raise DatabaseError(f"cannot read {path}: {error}") from None
        self._open[path] = OpenDatabase(conn, schema, sum(table_rows.values()), table_rows,
                                        prepare_schema(schema.sqlglot_mapping(), primary_keys(schema)))
        while len(self._open) > self._size:
            _, old = self._open.popitem(last=False)
            old.connection.close()
        return self._open[path]

    def close(self) -> None:
        for database in self._open.values():
            database.connection.close()
        self._open.clear()


def primary_keys(schema: DatabaseSchema) -> dict[str, list[str]]:
    """``{table: [primary-key columns]}`` for the decompiler."""
    return {t.name: [c.name for c in t.columns if c.primary_key] for t in schema.tables}


def statement_kind(sql: str) -> str | None:
    """``None`` for a query; else the statement's kind (``"Delete"``, ``"Insert"`` ...). SQL that
    sqlglot cannot parse counts as a query here: SQLite gets the final word on it."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]
    except Exception:  # malformed SQL: the gold execution will classify it
        return None
    for tree in trees:
        if not isinstance(tree, _QUERY_ROOTS):
            return type(tree).__name__
    if len(trees) > 1:
        return "MultipleStatements"
    return None


def _base_record(item: Item) -> dict[str, Any]:
    return {
        "question_id": item.question_id,
        "db_id": item.db_id,
        "difficulty": item.difficulty,
        "question": item.question,
        "evidence": item.evidence,
        "gold_sql": item.gold_sql,
        "pipe_sql": None,
        "round_tripped_sql": None,
        "validation": {},
        "googlesql": None,
    }


def _verdict(record: dict, label: str, *, stage: str | None = None, detail: str = "", **extra: Any) -> dict:
    record["validation"] = {"class": label, "stage": stage, "detail": detail[:2000], **extra}
    return record


class CheckMemo:
    """Per-process memo of whole checks (LRU), in memory only.

    An item's check depends on its database file, its gold SQL and the options, never on its
    question, and Spider asks most gold queries twice (dev: 972 items on databases that exist,
    533 distinct queries): the second item of a query takes a copy of the first one's outcome.
    Items are grouped by database into chunks, so a query's items meet in one worker."""

    _FIELDS = ("pipe_sql", "round_tripped_sql", "validation", "googlesql")

    def __init__(self, size: int = 512):
        self._size = size
        self._outcomes: OrderedDict[tuple, dict[str, Any]] = OrderedDict()

    @staticmethod
    def key(item: Item, options: CheckOptions) -> tuple | None:
        """What the check of ``item`` depends on (None: not worth remembering, no database)."""
        if item.problem is not None or not Path(item.db_path).is_file():
            return None
        path = Path(item.db_path).resolve()
        stat = path.stat()
        return options.key(), str(path), stat.st_mtime_ns, stat.st_size, item.gold_sql

    def recall(self, key: tuple, record: dict[str, Any]) -> dict[str, Any] | None:
        """``record`` completed with the remembered outcome, or None when there is none."""
        start = time.monotonic()
        outcome = self._outcomes.get(key)
        if outcome is None:
            return None
        self._outcomes.move_to_end(key)
        record.update(copy.deepcopy(outcome))
        if "seconds" in record["validation"]:  # this item's own cost, not the first one's again
            record["validation"]["seconds"] = {"memo_s": round(time.monotonic() - start, 4)}
        return record

    def remember(self, key: tuple, record: dict[str, Any]) -> None:
        if (record["validation"].get("variant") or {}).get("witness"):
            return  # the witness file is named after the item, so another item must save its own
        self._outcomes[key] = copy.deepcopy({field: record[field] for field in self._FIELDS})
        while len(self._outcomes) > self._size:
            self._outcomes.popitem(last=False)


def check_item(item: Item, options: CheckOptions, databases: DatabaseCache,
               memo: CheckMemo | None = None, witness_dir: Path | None = None) -> dict[str, Any]:
    """The validation record of one item (see the module docstring); with ``memo``, an item
    whose database and gold SQL were checked before copies that outcome; with ``witness_dir``, a
    variant that disagrees is saved there. Never raises."""
    record = _base_record(item)
    key = memo.key(item, options) if memo is not None else None
    if key is not None and (remembered := memo.recall(key, record)) is not None:
        return remembered
    try:
        record = _check(item, options, databases, record, witness_dir)
    except Exception as error:  # a bug must cost one item, never the batch
        import traceback

        record = _verdict(record, INTERNAL_ERROR,
                          detail=f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}")
    if key is not None:
        memo.remember(key, record)
    return record


class _Decided(Exception):
    """A phase of :func:`_check` has classified the item; ``record`` is final."""

    def __init__(self, record: dict) -> None:
        self.record = record


class Timings:
    """Seconds per phase of one check, as the record's ``seconds``; a phase that ends the check
    early (it raises) is not timed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, key: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        self.seconds[key] = round(time.monotonic() - start, 4)


def _check(item: Item, options: CheckOptions, databases: DatabaseCache, record: dict,
           witness_dir: Path | None) -> dict:
    """The check as a row of phases; each may decide the item's class and end it (:class:`_Decided`)."""
    from pipesql.decompile import decompile
    from pipesql.sql.compare import compare_results

    timings = Timings()
    try:
        database = _open_database(item, databases, record)
        run = _runner(database.connection, options)
        with timings.step("gold_s"):
            gold = _gold_result(item, run, record)
        with timings.step("decompile_s"):
            result = decompile(item.gold_sql, database.decompile_schema)
        record["pipe_sql"] = _pipe_sql(result, record, timings)
        with timings.step("round_trip_s"):
            sqlite_sql, round_trip = _round_trip(item, database, gold, run, options, record, timings)
        with timings.step("compare_s"):
            verdict = compare_results(item.gold_sql, gold.rows, round_trip.rows, rerun=lambda sql: run(sql).rows)
        if not verdict.match and not (gold.truncated or round_trip.truncated):
            _second_plan(item, database, gold, round_trip, verdict, run, options, record, timings)
        with timings.step("googlesql_s"):
            _with_googlesql(record, item, database, gold, options)
        if verdict.match and options.variants > 0:
            _prove_on_variants(item, sqlite_sql, gold, options, record, timings, witness_dir)
    except _Decided as decided:
        return decided.record
    return _verdict(record, MATCH if verdict.match else MISMATCH, stage="compare", detail=verdict.detail,
                    subclass=verdict.subclass, tie_aware=verdict.tie_aware, gold_rows=len(gold.rows),
                    truncated=gold.truncated or round_trip.truncated, seconds=timings.seconds)


def _decided(record: dict, label: str, **verdict: Any) -> _Decided:
    return _Decided(_verdict(record, label, **verdict))


def _open_database(item: Item, databases: DatabaseCache, record: dict) -> OpenDatabase:
    """The item's database, once the item, its file and its gold SQL are fit to check."""
    if item.problem is not None:
        raise _decided(record, BAD_ITEM, stage="item", detail=item.problem)
    path = Path(item.db_path)
    if not path.is_file():
        raise _decided(record, DB_MISSING, stage="database", detail=f"database not found: {path}")
    try:
        database = databases.get(path)
    except DatabaseError as error:
        raise _decided(record, DB_CORRUPT, stage="database", detail=str(error)) from None
    kind = statement_kind(item.gold_sql)
    if kind is not None:
        raise _decided(record, NOT_A_QUERY, stage="gold", detail=f"gold SQL is a {kind} statement, not a query")
    return database


def _runner(conn: sqlite3.Connection, options: CheckOptions) -> Callable[[str], QueryResult]:
    def run(sql: str) -> QueryResult:
        return execute(conn, sql, timeout_s=options.timeout_s, row_cap=options.row_cap)

    return run


def _gold_result(item: Item, run: Callable[[str], QueryResult], record: dict) -> QueryResult:
    try:
        return run(item.gold_sql)
    except QueryTimeout as error:
        raise _decided(record, TIMEOUT, stage="gold", detail=str(error)) from None
    except QueryError as error:
        raise _decided(record, GOLD_ERROR, stage="gold", detail=str(error)) from None


def _pipe_sql(result: Any, record: dict, timings: Timings) -> str:
    """The decompiler's pipe SQL; a refusal decides the item."""
    if result.ok:
        return result.pipe_sql
    if result.reason in UNDEFINED_GOLD_REASONS:  # stage "gold": out of the match rate's denominator
        raise _decided(record, GOLD_UNDEFINED, stage="gold", detail=str(result.reason), seconds=timings.seconds)
    raise _decided(record, DECOMPILE_FAIL, stage="decompile", detail=str(result.reason), seconds=timings.seconds)


def _round_trip(item: Item, database: OpenDatabase, gold: QueryResult, run: Callable[[str], QueryResult],
                options: CheckOptions, record: dict, timings: Timings) -> tuple[str, QueryResult]:
    """The pipe SQL back in SQLite, and its result."""
    from pipesql.sql.transpile import pipe_to_sqlite

    try:
        sqlite_sql = pipe_to_sqlite(record["pipe_sql"])
    except Exception as error:  # TranspileError, and anything sqlglot lets escape
        raise _decided(record, RT_ERROR, stage="transpile", detail=f"{type(error).__name__}: {error}",
                       seconds=timings.seconds) from None
    record["round_tripped_sql"] = sqlite_sql
    try:
        return sqlite_sql, run(sqlite_sql)
    except QueryTimeout as error:
        raise _decided(record, TIMEOUT, stage="round_trip", detail=str(error), seconds=timings.seconds) from None
    except QueryError as error:
        _with_googlesql(record, item, database, gold, options)
        raise _decided(record, RT_ERROR, stage="execute", detail=str(error), seconds=timings.seconds) from None


def _second_plan(item: Item, database: OpenDatabase, gold: QueryResult, round_trip: QueryResult, verdict,
                 run: Callable[[str], QueryResult], options: CheckOptions, record: dict, timings: Timings) -> None:
    """A mismatch whose gold returns other rows under another legal plan (:mod:`pipesql.validate.plans`)
    is the gold's: ``GOLD_NONDETERMINISTIC`` (stage "gold", out of the match rate's denominator),
    with both results as the proof."""
    from pipesql.sql.compare import compare_results

    with timings.step("second_plan_s"):
        other = second_plan(database.connection, Path(item.db_path), item.gold_sql, gold.rows, compare_results,
                            timeout_s=options.timeout_s, row_cap=options.row_cap)
    if other is None:
        return
    _with_googlesql(record, item, database, gold, options)
    witness = {**other.witness(gold.rows), "round_trip_is_other": compare_results(
        item.gold_sql, other.rows, round_trip.rows, rerun=lambda sql: run(sql).rows).match}
    raise _decided(record, GOLD_NONDETERMINISTIC, stage="gold", detail=other.detail, subclass=verdict.subclass,
                   witness=witness, seconds=timings.seconds)


def _prove_on_variants(item: Item, sqlite_sql: str, gold: QueryResult, options: CheckOptions, record: dict,
                       timings: Timings, witness_dir: Path | None) -> None:
    """A match must hold on generated variants of the database too; the first that refutes it
    decides the item."""
    with timings.step("variants_s"):
        witness = first_disagreement(Path(item.db_path), item.gold_sql, [sqlite_sql], count=options.variants,
                                     rows=options.variant_rows)[0]
    if witness is not None:
        raise _decided(record, VARIANT_MISMATCH, stage="variant", detail=witness.detail, subclass=witness.subclass,
                       variant=_witness_record(item, witness, witness_dir), gold_rows=len(gold.rows),
                       seconds=timings.seconds)


def _witness_record(item: Item, witness: Disagreement, witness_dir: Path | None) -> dict[str, Any]:
    """Which variant disagreed, and where it is saved (rerun: ``sqlite3 FILE "<gold_sql>"`` against
    ``"<round_tripped_sql>"``)."""
    saved = None
    if witness_dir:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.question_id)
        saved = str(witness.save(Path(witness_dir) / f"{name}.variant{witness.index}.sqlite"))
    return {"index": witness.index, "seed": witness.seed, "witness": saved}


def _with_googlesql(record: dict, item: Item, database: OpenDatabase, gold: QueryResult, options: CheckOptions) -> None:
    if options.googlesql and record["pipe_sql"]:
        record["googlesql"] = googlesql_check(record["pipe_sql"], item, database, gold, options)


def googlesql_check(pipe_sql: str, item: Item, database: OpenDatabase, gold: QueryResult,
                    options: CheckOptions) -> dict[str, Any]:
    """``{"analyzed", "error", "executed", "match", ...}``: does GoogleSQL accept the pipe SQL,
    and (small databases) does it compute the gold's rows? Never raises."""
    from pipesql.sql.compare import compare_results

    outcome: dict[str, Any] = {"analyzed": False, "error": None, "executed": False, "match": None}
    try:
        from pipesql.sql import googlesql

        engine = googlesql.instance()
    except Exception as failure:  # the engine could not start: record why, keep validating
        outcome["error"] = f"unavailable: {type(failure).__name__}: {failure}"
        return outcome
    result = None
    schema, total_rows, conn = database.schema, database.total_rows, database.connection
    work = googlesql.predicted_work(item.gold_sql, database.table_rows) if options.googlesql_max_work else 0
    if 0 < options.googlesql_execute_rows and total_rows <= options.googlesql_execute_rows \
            and work > options.googlesql_max_work > 0:
        # it would run past the time limit (and a timeout replaces the execution instance): analyze only
        outcome["skipped"] = f"predicted {work} row visits (> {options.googlesql_max_work})"
    elif 0 < options.googlesql_execute_rows and total_rows <= options.googlesql_execute_rows:
        try:
            result = engine.execute(pipe_sql, item.db_path, row_cap=options.row_cap, timeout_s=options.googlesql_timeout_s)
        except googlesql.GoogleSQLAnalysisError as failure:
            outcome["error"] = str(failure)
            return outcome
        except googlesql.NotRepresentable as failure:
            outcome["skipped"] = f"not loadable: {failure}"
        except googlesql.GoogleSQLError as failure:  # analyzed, then failed or timed out while running
            outcome.update(analyzed=True, error=f"execution: {failure}"[:1000])
            return outcome
    elif options.googlesql_execute_rows > 0:
        outcome["skipped"] = f"database has {total_rows} rows (> {options.googlesql_execute_rows})"
    if result is None:
        error = engine.analyze(pipe_sql, schema)
        outcome.update(analyzed=error is None, error=error)
        return outcome
    outcome.update(analyzed=True, executed=True)

    def rerun(sql: str):
        return execute(conn, sql, timeout_s=options.timeout_s, row_cap=options.row_cap).rows

    verdict = compare_results(item.gold_sql, gold.rows, result.rows, rerun=rerun)
    outcome["match"] = verdict.match
    if not verdict.match:
        outcome["mismatch"] = verdict.subclass
        outcome["detail"] = verdict.detail
    return outcome


def overrun_record(item: Item, budget_s: float, seconds: float) -> dict[str, Any]:
    """The record of an item whose check ran past its budget (its worker was killed)."""
    return _verdict(_base_record(item), TIMEOUT, stage="budget", seconds={"item_s": round(seconds, 3)},
                    detail=f"the item's check exceeded {budget_s:g} s (--item-timeout-s); its worker was killed")


def crash_record(item: Item, detail: str) -> dict[str, Any]:
    """The record of an item whose check kept killing the worker process (the ray engine's
    shards): kept and classified like any other bug, so the batch goes on."""
    return _verdict(_base_record(item), INTERNAL_ERROR, stage="worker", detail=detail)
