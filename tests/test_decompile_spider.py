"""Execution equivalence on Spider: gold SQL and decompiled pipe SQL (through pipe_to_sqlite)
return the same rows. Skips when the Spider data is absent.

Rows are compared as multisets, or in order when the gold has ORDER BY; rows that tie on the
ORDER BY keys may come back in any order, and at a LIMIT cut any of the tied rows is right.
"""

import collections
import json
import os
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from pipesql.decompile import decompile
from pipesql.sql.schema import read_sqlite_schema
from pipesql.sql.execute import QueryError, connect_readonly, execute
from pipesql.sql.transpile import pipe_to_sqlite

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).parents[2] / "shared/data/spider")
pytestmark = pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason="Spider data not present")


def _norm(row):
    return tuple(round(v, 6) if isinstance(v, float) else v for v in row)


def _ties_allowed(conn, gold_sql, got):
    """Does ``got`` follow the gold ORDER BY, with free order among tied rows?"""
    try:
        tree = sqlglot.parse_one(gold_sql, read="sqlite")
        if not isinstance(tree, exp.Select) or not tree.args.get("order"):
            return False
        limit = int(tree.args["limit"].expression.this) if tree.args.get("limit") else None
        offset = int(tree.args["offset"].expression.this) if tree.args.get("offset") else 0
        width = len(tree.expressions)
        for ordered in tree.args["order"].expressions:
            tree.select(ordered.this.copy(), copy=False)
        tree.set("limit", None)
        tree.set("offset", None)
        full = execute(conn, tree.sql("sqlite"), timeout_s=10).rows
    except (QueryError, ValueError, sqlglot.errors.SqlglotError):
        return False
    window = full[offset:offset + limit] if limit is not None else full[offset:]
    if len(window) != len(got):
        return False
    blocks = []
    for row in window:
        if blocks and blocks[-1][0] == row[width:]:
            blocks[-1][1].append(row)
        else:
            blocks.append((row[width:], [row]))
    position = 0
    for index, (key, block) in enumerate(blocks):
        segment = collections.Counter(_norm(r) for r in got[position:position + len(block)])
        position += len(block)
        edge = index in (0, len(blocks) - 1)
        pool = collections.Counter(_norm(r[:width]) for r in (full if edge else block) if r[width:] == key)
        if any(pool[r] < n for r, n in segment.items()):
            return False
    return True


def _match_rate(items):
    schemas, conns = {}, {}
    executable = matched = 0
    failures = []
    for item in items:
        path = SPIDER / "database" / item["db_id"] / f"{item['db_id']}.sqlite"
        if not path.is_file():
            continue
        if item["db_id"] not in conns:
            conns[item["db_id"]] = connect_readonly(path)
            schemas[item["db_id"]] = read_sqlite_schema(path).sqlglot_mapping()
        conn = conns[item["db_id"]]
        try:
            gold = execute(conn, item["query"], timeout_s=10).rows
        except QueryError:
            continue
        executable += 1
        result = decompile(item["query"], schemas[item["db_id"]])
        try:
            got = execute(conn, pipe_to_sqlite(result.pipe_sql), timeout_s=10).rows if result.pipe_sql else None
        except Exception as error:  # noqa: BLE001 - any failure is a miss, counted below
            failures.append((item["query"], str(error)))
            continue
        if got is None:
            failures.append((item["query"], result.reason))
            continue
        ordered = "order by" in item["query"].lower()
        same = [_norm(r) for r in gold] == [_norm(r) for r in got] if ordered else (
            collections.Counter(map(_norm, gold)) == collections.Counter(map(_norm, got)))
        if same or _ties_allowed(conn, item["query"], got):
            matched += 1
        else:
            failures.append((item["query"], result.pipe_sql))
    for conn in conns.values():
        conn.close()
    return executable, matched, failures


def test_spider_dev_round_trip():
    items = json.loads((SPIDER / "dev.json").read_text())
    executable, matched, failures = _match_rate(items)
    assert executable > 900
    assert matched / executable >= 0.995, failures[:5]


def test_spider_train_sample_round_trip():
    items = json.loads((SPIDER / "train_spider.json").read_text()) + json.loads((SPIDER / "train_others.json").read_text())
    executable, matched, failures = _match_rate(items[::5])
    assert executable > 1500
    assert matched / executable >= 0.995, failures[:5]
