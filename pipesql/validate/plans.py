"""The gold query under a second legal plan: is its result defined at all?

A gold query can have more than one legal answer: a subquery's ``ORDER BY count(*) DESC LIMIT 1``
that cuts through tied groups, ``LIMIT`` without a total order, a bare column. SQLite then returns
whichever rows its scan met first, and a correct rewrite may return others. Such an item is an
input problem (``GOLD_NONDETERMINISTIC``; ``GOLD_UNDEFINED`` where the decompiler refuses the gold
because SQL leaves its result undefined) only with proof: the gold itself, run under another plan
SQLite may legally choose, returns another result, on its database or on one of its variants
(:func:`second_plan_on_variants`). Such plans:

- the tables the query reads copied with their rows in reverse insertion order (so every scan,
  and every sort's order among equal keys, meets the rows the other way round);
- the same copy in the original order, run with ``PRAGMA reverse_unordered_selects``;
- each subquery's ``ORDER BY ... LIMIT`` given a tie-breaker, its output columns descending,
  then ascending (``ORDER BY count(*) DESC, 1 DESC``): a total order that refines the gold's,
  so its result is one the gold may legally return (SQLite breaks such ties by how it grouped
  or scanned, which scan order alone may not move);
- ``SELECT DISTINCT a ... ORDER BY b`` with ``b`` not selected: each ``a`` ordered by the
  smallest, then the largest ``b`` of its rows (``GROUP BY a ORDER BY MIN(b)``), two of the
  answers the gold may give (SQLite takes the ``b`` of the row it scanned first, and where the
  table's key orders every scan no copy moves that row).

The first two run on in-memory copies built by this module (the original stays read-only, and
its sandbox refuses PRAGMAs that set anything), the rewrites on the original; the gold runs through
:func:`pipesql.sql.execute.execute`, under the same limits.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import sqlglot
from sqlglot import exp

from pipesql.sql.execute import QueryError, connect_scratch, deadline, execute, seal
from pipesql.sql.identifiers import sqlite_identifier
from pipesql.validate.variants import Disagreement, query_hints, source_of, variants

REVERSED_ROWS = "rows in reverse insertion order"
REPRESENTED = "each output row ordered by the {} of its rows' {}"
REVERSED_SCANS = "PRAGMA reverse_unordered_selects"
TIES_BROKEN = "subquery ties broken by its output columns"
WITNESS_ROWS = 20  # rows of each result kept in the record
# queries one variant's search may run under its time limit: building it, the gold, two
# tie-broken and two represented rewrites, and two copies with a run each
PLAN_QUERIES = 10


@dataclass(frozen=True)
class SecondPlan:
    """The gold's rows under another legal plan, where they differ from the first run's."""

    plan: str
    rows: tuple[tuple, ...]
    detail: str

    def witness(self, gold_rows: Sequence[tuple]) -> dict[str, Any]:
        """Both results (first rows of each), JSON-ready: the proof that the gold disagrees with itself."""
        return {"plan": self.plan, "detail": self.detail, "gold_rows": len(gold_rows),
                "other_rows": len(self.rows), "gold": [list(r) for r in gold_rows[:WITNESS_ROWS]],
                "other": [list(r) for r in self.rows[:WITNESS_ROWS]]}


def _copy(conn: sqlite3.Connection, db_path: str, sql: str, *, reverse: bool, timeout_s: float,
          row_cap: int) -> sqlite3.Connection | None:
    """An in-memory copy of the tables ``sql`` reads (None: one of them is over ``row_cap`` rows)."""
    source = source_of(db_path)
    tables = query_hints(sql, source).tables
    copy = connect_scratch()  # the file's DDL (CHECK constraints, defaults) is input: under the sandbox's limits
    for kind, table, statement in source.ddl:
        if tables is not None and table not in tables:
            continue
        with deadline(copy, timeout_s):
            try:
                copy.execute(statement)
            except sqlite3.Error:
                continue
        if kind != "table":
            continue
        result = execute(conn, f"SELECT * FROM {sqlite_identifier(table)}", timeout_s=timeout_s, row_cap=row_cap)
        if result.truncated:
            copy.close()
            return None
        rows = reversed(result.rows) if reverse else result.rows
        marks = ", ".join("?" for _ in result.columns)
        with deadline(copy, timeout_s):
            copy.executemany(f"INSERT INTO {sqlite_identifier(table)} VALUES ({marks})", rows)
    seal(copy)
    return copy


def _run(copy: sqlite3.Connection, sql: str, timeout_s: float, *, reverse_scans: bool = False):
    copy.execute(f"PRAGMA reverse_unordered_selects = {int(reverse_scans)}")
    return execute(copy, sql, timeout_s=timeout_s).rows


def _detail(plan: str, verdict) -> str:
    counts = verdict.detail.replace("predicted", "other plan").replace(" not other plan", " not in the other")
    return f"the gold itself gives other rows under {plan} ({verdict.subclass}: {counts})"


def tie_broken(sql: str, descending: bool) -> str | None:
    """``sql`` with each subquery's ``ORDER BY ... LIMIT`` refined by its output columns (by
    position) in one direction; None when no subquery cuts an ordered result."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except Exception:  # noqa: BLE001 - unparseable: no such plan
        return None
    changed = False
    for select in tree.find_all(exp.Select):
        order = select.args.get("order")
        if select is tree or order is None or select.args.get("limit") is None \
                or any(isinstance(p, exp.Star) or p.find(exp.Star) for p in select.expressions):
            continue
        order.set("expressions", order.expressions + [exp.Ordered(this=exp.Literal.number(i + 1), desc=descending)
                                                      for i in range(len(select.expressions))])
        changed = True
    return tree.sql("sqlite") if changed else None


def represented(sql: str) -> list[tuple[str, str]]:
    """``(plan, sql)`` for ``SELECT DISTINCT a ... ORDER BY b`` whose one order key ``b`` is not
    selected: each ``a`` ordered by the MIN, then the MAX of its rows' ``b``; none otherwise."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except Exception:  # noqa: BLE001 - unparseable: no such plan
        return []
    order = tree.args.get("order") if isinstance(tree, exp.Select) else None
    if order is None or not tree.args.get("distinct") or tree.args.get("group") or tree.find(exp.AggFunc):
        return []
    selected = {e.sql() for projection in tree.expressions for e in (projection, projection.unalias())} \
        | {projection.alias for projection in tree.expressions if projection.alias}
    keys = [position for position, key in enumerate(order.expressions) if key.this.sql() not in selected]
    if len(keys) != 1 or any(isinstance(p, exp.Star) for p in tree.expressions):
        return []
    plans = []
    for function in (exp.Min, exp.Max):
        copy = tree.copy()
        copy.set("distinct", None)
        copy.set("group", exp.Group(expressions=[p.unalias().copy() for p in copy.expressions]))
        key = copy.args["order"].expressions[keys[0]]
        plan = REPRESENTED.format(function.__name__.upper(), key.this.sql("sqlite"))
        key.set("this", function(this=key.this.copy()))
        plans.append((plan, copy.sql("sqlite")))
    return plans


def _tie_broken_sqls(gold_sql: str) -> list[tuple[str, str]]:
    """``(plan, sql)`` for each direction :func:`tie_broken` refines the gold in."""
    plans = []
    for descending in (True, False):
        sql = tie_broken(gold_sql, descending)
        if sql is None:
            return []
        plans.append((f"{TIES_BROKEN} ({'descending' if descending else 'ascending'})", sql))
    return plans


def _other_answer(conn: sqlite3.Connection, gold_sql: str, gold_rows, plans: list[tuple[str, str]],
                  compare: Callable, timeout_s: float, row_cap: int) -> SecondPlan | None:
    """The first of ``plans`` (other answers the gold may legally give) whose rows differ from the gold's."""
    for plan, sql in plans:
        try:
            other = execute(conn, sql, timeout_s=timeout_s, row_cap=row_cap).rows
            verdict = compare(gold_sql, gold_rows, other,
                              rerun=lambda q: execute(conn, q, timeout_s=timeout_s, row_cap=row_cap).rows)
        except QueryError:
            continue
        if not verdict.match:
            return SecondPlan(plan, tuple(other), _detail(plan, verdict))
    return None


def second_plan(conn: sqlite3.Connection, db_path: str | Path, gold_sql: str, gold_rows: Sequence[tuple],
                compare: Callable, *, timeout_s: float, row_cap: int) -> SecondPlan | None:
    """The first other plan under which the gold returns other rows (``compare(gold_sql, a, b,
    rerun=...)``, tie-aware at the top level), or None when every plan agrees or none could run."""
    rewritten = _other_answer(conn, gold_sql, gold_rows, _tie_broken_sqls(gold_sql) + represented(gold_sql),
                              compare, timeout_s, row_cap)
    if rewritten is not None:
        return rewritten
    for reverse_rows, reverse_scans, plan in ((True, False, REVERSED_ROWS), (False, True, REVERSED_SCANS)):
        try:
            copy = _copy(conn, str(db_path), gold_sql, reverse=reverse_rows, timeout_s=timeout_s, row_cap=row_cap)
        except (QueryError, sqlite3.Error):
            return None
        if copy is None:
            return None
        try:
            other = _run(copy, gold_sql, timeout_s, reverse_scans=reverse_scans)
            verdict = compare(gold_sql, gold_rows, other,
                              rerun=lambda sql: _run(copy, sql, timeout_s, reverse_scans=reverse_scans))
        except QueryError:
            continue
        finally:
            copy.close()
        if not verdict.match:
            return SecondPlan(plan, tuple(other), _detail(plan, verdict))
    return None


def second_plan_on_variants(db_path: str | Path, gold_sql: str, compare: Callable, *, count: int, rows: int,
                            timeout_s: float, row_cap: int, budget_s: float) -> tuple[Disagreement, tuple, SecondPlan] | None:
    """The first database variant (:func:`pipesql.validate.variants.variants`) on which the gold
    returns other rows under a second plan: proof, where the original database happens to define
    the gold's result, that SQL does not. ``(the variant, the gold's rows there, the other plan)``.
    No variant is started that could run past ``budget_s`` (each costs milliseconds, but up to
    :data:`PLAN_QUERIES` queries of ``timeout_s`` each)."""
    built = variants(db_path, gold_sql, count=count, rows=rows)
    deadline = time.monotonic() + budget_s - PLAN_QUERIES * timeout_s
    try:
        for index, seed, conn in built:
            try:
                gold = execute(conn, gold_sql, timeout_s=timeout_s, row_cap=row_cap).rows
                other = second_plan(conn, db_path, gold_sql, gold, compare, timeout_s=timeout_s, row_cap=row_cap)
            except QueryError:
                other = None
            if other is not None:
                return Disagreement(index, seed, other.detail, None, conn), gold, other
            conn.close()
            if time.monotonic() > deadline:
                break
    finally:
        built.close()
    return None
