"""pipe_to_sqlite: the repairs of sqlglot's pipe translation, checked by running on SQLite."""

import sqlite3

import pytest

from pipesql.sql.transpile import TranspileError, pipe_to_sqlite


@pytest.fixture(scope="module")
def conn():
    db = sqlite3.connect(":memory:")
    db.executescript("""
        CREATE TABLE t (id INTEGER, k INTEGER, name TEXT, x REAL);
        INSERT INTO t VALUES (1, 1, 'a', 1.0), (2, 1, 'b', 5.0), (3, 2, 'c', 2.0), (4, 2, 'c', 9.0);
        CREATE TABLE u (k INTEGER, y INTEGER);
        INSERT INTO u VALUES (1, 10), (2, 20), (2, 30);
    """)
    return db


def rows(conn, pipe):
    return sorted(conn.execute(pipe_to_sqlite(pipe)).fetchall())


def test_select_distinct_keeps_distinct(conn):
    assert rows(conn, "FROM t |> SELECT DISTINCT name") == [("a",), ("b",), ("c",)]


def test_select_distinct_inside_subquery(conn):
    assert rows(conn, "FROM t |> WHERE k IN (FROM u |> SELECT DISTINCT k) |> SELECT DISTINCT k") == [(1,), (2,)]


def test_where_after_limit_runs_after_the_limit(conn):
    assert rows(conn, "FROM t |> ORDER BY id |> LIMIT 2 |> WHERE id > 1 |> SELECT id") == [(2,)]


def test_select_after_limit(conn):
    assert rows(conn, "FROM t |> ORDER BY x DESC |> LIMIT 1 |> SELECT name") == [("c",)]


def test_set_operation_with_pipe_operand(conn):
    pipe = "FROM t |> SELECT name |> UNION DISTINCT (FROM t |> WHERE id > 2 |> SELECT name)"
    assert rows(conn, pipe) == [("a",), ("b",), ("c",)]


def test_correlated_pipe_subquery_stays_correlated(conn):
    pipe = "FROM t |> WHERE EXISTS(FROM u |> WHERE u.k = t.k |> WHERE u.y > 15) |> SELECT id"
    assert rows(conn, pipe) == [(3,), (4,)]


def test_any_value_having_max_is_the_max_row(conn):
    pipe = "FROM t |> AGGREGATE MAX(x) AS m, ANY_VALUE(id HAVING MAX x) AS id GROUP BY k"
    assert rows(conn, pipe) == [(1, 5.0, 2), (2, 9.0, 4)]


def test_any_value_in_group(conn):
    assert rows(conn, "FROM t |> WHERE k = 2 |> AGGREGATE ANY_VALUE(name) AS name GROUP BY k") == [(2, "c")]


def test_div_is_integer_division(conn):
    assert rows(conn, "FROM t |> WHERE id = 3 |> SELECT DIV(id, NULLIF(2, 0)) AS q") == [(1,)]


def test_double_quotes_are_strings(conn):
    assert rows(conn, 'FROM t |> WHERE name = "a" |> SELECT id') == [(1,)]


def test_with_line(conn):
    assert rows(conn, "WITH big AS (FROM t |> WHERE x > 4)\nFROM big\n|> AGGREGATE COUNT(*) AS n") == [(2,)]


def test_bad_input_raises_transpile_error():
    with pytest.raises(TranspileError):
        pipe_to_sqlite("FROM t |> FROBNICATE x")
    with pytest.raises(TranspileError):
        pipe_to_sqlite("FROM t; FROM u")


# Date/time functions and integer casts: the decompiler's GoogleSQL, decompiled from SQLite,
# must come back to SQLite returning what the original SQLite query returns.
DATE_ROWS = """
    CREATE TABLE d (id INTEGER, a TEXT, b DATETIME, x REAL);
    INSERT INTO d VALUES (1, '2023-04-05', '2020-01-01 10:00:00', 1.7), (2, '2023-04-05 12:30:00', '2019-12-31', -1.7),
        (3, '2024-03-01 14:15', '0000-00-00', 2.5), (4, 'abc', NULL, NULL), (5, NULL, '2018-07-01 00:00:01', -2.5),
        (6, '2024-01-31T08:00:00', '2024-02-29', 0.5);
"""
DATE_SCHEMA = {"d": {"id": "INTEGER", "a": "TEXT", "b": "DATETIME", "x": "REAL"}}
ROUND_TRIPS = [
    "SELECT strftime('%Y', a), count(*) FROM d GROUP BY strftime('%Y', a)",
    "SELECT id, strftime('%m', a), strftime('%w', b), strftime('%H:%M', a), strftime('%j', b) FROM d",
    "SELECT id FROM d WHERE strftime('%Y-%m', a) = '2023-04'",
    "SELECT id, julianday(a) - julianday(b) FROM d",
    "SELECT avg(julianday(a) - julianday(b)) FROM d",
    "SELECT id, CAST((julianday('2025-01-01') - julianday(a)) / 365.25 AS INTEGER) FROM d",
    "SELECT id, CAST(round((julianday(a) - julianday(b)) * 1440) AS INTEGER) FROM d",
    "SELECT id, julianday(a), 5 - julianday(b) FROM d",
    "SELECT id, min(julianday(a)) - julianday(b) FROM d GROUP BY id",
    "SELECT id, date(a), datetime(a), time(a), date(b, '+30 days'), datetime(a, '-1 month', 'start of month') FROM d",
    "SELECT id, date(a, '+2 hours', '-3 minutes', '+1 year'), date(b, 'start of year') FROM d",
    "SELECT id FROM d WHERE date(a) = '2023-04-05'",
    "SELECT id FROM d ORDER BY julianday(a) - julianday(b) DESC, id LIMIT 2",
    "SELECT strftime('%Y', 'now') - strftime('%Y', a) >= 0 FROM d",
    # '0000-00-00' is no date: SQLite's b - b gives 0 there, EXTRACT(YEAR ...) NULL (documented)
    "SELECT id, b - b FROM d WHERE b - b = 0 AND id <> 3",
    "SELECT id, CAST(x AS INTEGER), CAST(x * 3 AS INT), CAST(id AS INTEGER) FROM d",
    "SELECT avg(b), sum(b) FROM d WHERE id <> 3",
]


@pytest.mark.parametrize("sql", ROUND_TRIPS)
def test_date_and_cast_round_trip(sql):
    from pipesql.sql.compare import compare
    from pipesql.decompile import decompile

    db = sqlite3.connect(":memory:")
    db.executescript(DATE_ROWS)
    pipe = decompile(sql, DATE_SCHEMA).pipe_sql
    assert pipe is not None and "julianday(" not in pipe.lower() and "strftime(" not in pipe.lower()
    gold = db.execute(sql).fetchall()
    got = db.execute(pipe_to_sqlite(pipe)).fetchall()
    assert compare(gold, got, ordered="ORDER BY" in sql).subclass is None, (pipe, gold, got)


@pytest.mark.parametrize(("pipe", "expected"), [
    ("FROM d |> SELECT FORMAT_DATETIME('%Y', SAFE_CAST(a AS DATETIME)) AS y", "2023"),
    ("FROM d |> SELECT DATETIME_DIFF(SAFE_CAST(b AS DATETIME), SAFE_CAST('2019-12-31 23:00:00' AS DATETIME), SECOND) AS s", 39600),
    ("FROM d |> SELECT DATETIME_DIFF(SAFE_CAST(b AS DATETIME), SAFE_CAST('2019-12-31 23:00:00' AS DATETIME), HOUR) AS h", 11),
    ("FROM d |> SELECT DATETIME_DIFF(SAFE_CAST(b AS DATETIME), SAFE_CAST('2019-12-31 23:00:00' AS DATETIME), DAY) AS dd", 1),
    ("FROM d |> SELECT TIMESTAMP_DIFF(SAFE_CAST(b AS TIMESTAMP), SAFE_CAST('2019-12-31 23:30:00' AS TIMESTAMP), HOUR) AS h", 10),
    ("FROM d |> SELECT DATETIME_ADD(SAFE_CAST(a AS DATETIME), INTERVAL 1 DAY) AS n", "2023-04-06 00:00:00"),
    ("FROM d |> SELECT DATETIME_SUB(SAFE_CAST(a AS DATETIME), INTERVAL 2 MONTH) AS n", "2023-02-05 00:00:00"),
    ("FROM d |> SELECT DATETIME_TRUNC(SAFE_CAST(a AS DATETIME), YEAR) AS n", "2023-01-01 00:00:00"),
    ("FROM d |> SELECT EXTRACT(MONTH FROM SAFE_CAST(a AS DATETIME)) AS m", 4),
    ("FROM d |> SELECT EXTRACT(DAYOFWEEK FROM SAFE_CAST(a AS DATETIME)) AS w", 4),  # a Wednesday
    ("FROM d |> SELECT CAST(TRUNC(x) AS INT64) AS i", 1),
    ("FROM d |> WHERE id = 2 |> SELECT CAST(TRUNC(x) AS INT64) AS i", -1),
])
def test_googlesql_date_functions_on_sqlite(pipe, expected):
    db = sqlite3.connect(":memory:")
    db.executescript(DATE_ROWS)
    assert db.execute(pipe_to_sqlite(pipe)).fetchone()[0] == expected


def test_current_datetime_is_now():
    sql = pipe_to_sqlite("FROM u |> SELECT CURRENT_DATETIME() AS n")
    assert "DATETIME('now')" in sql.replace('"', "'")
