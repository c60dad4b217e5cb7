"""SQLite constructs BIRD uses, each handled with faithful GoogleSQL or refused with a named
reason (fixture: ``tests/fixtures/decompile/sqlite_constructs.sql``).

Every pair is checked three ways: the exact pipe SQL (or reason) the decompiler gives; on
SQLite, the round-tripped pipe SQL returns the gold's rows on a database whose data make each
construct matter (several rows for a scalar subquery, text next to numbers, dates as text);
and ZetaSQL analyzes the pipe SQL against the same schema.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipesql.decompile import decompile
from pipesql.sql.compare import compare_results
from pipesql.sql.execute import connect_readonly, execute
from pipesql.sql.schema import read_sqlite_schema
from pipesql.sql.transpile import pipe_to_sqlite
from pipesql.validate.check import primary_keys

FIXTURE = Path(__file__).parent / "fixtures" / "decompile" / "sqlite_constructs.sql"

_ROWS = {
    "person": [(1, "Ann", "F", 34, "1990-04-01", 7.5, "A1"), (2, "Bob", "M", 51, "1973-11-20", 6.0, "B2"),
               (3, "Cid", "M", 45, "1979-01-05", None, "7"), (4, "Dee", "F", 29, "1995-07-30", 9.25, "D4"),
               (5, "Eve", "F", 45, None, 8.0, "12")],
    "visit": [(1, 2, "2023-05-02", 30.0), (2, 1, "2023-06-10", 12.5), (3, 2, "2024-01-15", 8.0),
              (4, 4, "2022-12-31", 55.0), (5, 3, "2023-06-01", 11.0), (6, 1, "2024-02-29", 40.0)],
}


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """``(sql, expected)`` pairs: statements separated by ';', comment lines dropped."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    statements = [s.strip() for s in text.split(";") if s.strip()]
    assert len(statements) % 2 == 0, "every query needs its expected output"
    return list(zip(statements[::2], statements[1::2]))


PAIRS = read_pairs(FIXTURE)


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("constructs") / "constructs.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT, gender TEXT, age INT, born DATE, "
                 "score REAL, code TEXT)")
    conn.execute("CREATE TABLE visit (id INTEGER PRIMARY KEY, person_id INT REFERENCES person (id), day DATE, cost REAL)")
    for table, rows in _ROWS.items():
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="module")
def schema(database):
    return read_sqlite_schema(database)


@pytest.mark.parametrize(("sql", "expected"), PAIRS, ids=[sql[:60] for sql, _ in PAIRS])
def test_construct(sql, expected, database, schema):
    result = decompile(sql, schema.sqlglot_mapping(), keys=primary_keys(schema))
    if expected.startswith("unsupported:"):
        assert result.reason == expected
        return
    assert result.pipe_sql == expected, result.reason
    conn = connect_readonly(database)
    try:
        gold = execute(conn, sql).rows
        round_trip = execute(conn, pipe_to_sqlite(result.pipe_sql)).rows
        verdict = compare_results(sql, gold, round_trip, rerun=lambda q: execute(conn, q).rows)
    finally:
        conn.close()
    assert verdict.match, (verdict.detail, gold, round_trip)


@pytest.fixture(scope="module")
def engine():
    from pipesql.sql import googlesql

    return googlesql.instance()


@pytest.mark.parametrize(("sql", "expected"), [p for p in PAIRS if not p[1].startswith("unsupported:")],
                         ids=[sql[:60] for sql, e in PAIRS if not e.startswith("unsupported:")])
def test_construct_analyzes_in_googlesql(sql, expected, engine, schema):
    assert engine.analyze(expected, schema) is None
