"""pipe_to_sqlite: the repairs of sqlglot's pipe translation, checked by running on SQLite."""

import sqlite3

import pytest

from pipesql.transpile import TranspileError, pipe_to_sqlite


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
