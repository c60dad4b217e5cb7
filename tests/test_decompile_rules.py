"""The decompiler's rule fixtures: standard SQL → the exact pipe SQL it emits, one file per rule
family in ``tests/fixtures/decompile/`` (format and per-case options: :mod:`decompile_fixtures`).

A change of output is a change of training data, so it must show up here. Every case that
decompiles is also run: the gold and its pipe SQL translated back to SQLite return the same
rows on the fixture schema's database.
"""

from __future__ import annotations

import pytest
from decompile_fixtures import Case, all_cases, build_database, read_cases

from pipesql.decompile import decompile, prepare_schema, split_operators
from pipesql.sql.compare import compare_results
from pipesql.sql.execute import connect_readonly, execute
from pipesql.sql.schema import read_sqlite_schema
from pipesql.sql.transpile import pipe_to_sqlite
from pipesql.validate.check import primary_keys

CASES = all_cases()
SCHEMA = {
    "singer": {"Singer_ID": "INT", "Name": "TEXT", "Age": "INT", "Country": "VARCHAR(20)", "Net_Worth": "REAL"},
    "concert": {"concert_ID": "INT", "Singer_ID": "TEXT", "Year": "TEXT", "Stadium": "TEXT"},
}


@pytest.fixture(scope="module")
def databases(tmp_path_factory):
    """Schema name → (database file, prepared schema), each built on first use."""
    built = {}

    def get(name: str):
        if name not in built:
            path = build_database(name, tmp_path_factory.mktemp(name))
            schema = read_sqlite_schema(path)
            built[name] = (path, prepare_schema(schema.sqlglot_mapping(), primary_keys(schema)))
        return built[name]

    return get


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fixture(case: Case, databases):
    database, schema = databases(case.schema) if case.schema else (None, None)
    result = decompile(case.sql, schema)
    if case.refused:
        assert result.reason == case.expected
        return
    assert result.pipe_sql == case.expected, result.reason
    if not case.execute:
        return
    conn = connect_readonly(database)
    try:
        gold = execute(conn, case.sql).rows
        round_trip = execute(conn, pipe_to_sqlite(result.pipe_sql)).rows
        verdict = compare_results(case.sql, gold, round_trip, rerun=lambda q: execute(conn, q).rows)
    finally:
        conn.close()
    assert verdict.match, (verdict.detail, gold, round_trip)


def test_fixture_options_and_lines(tmp_path):
    path = tmp_path / "family.sql"
    path.write_text("-- a comment\nSELECT a FROM t;\nFROM t\n|> SELECT a;\n\n# schema: none\n# execute: false\n"
                    "SELECT b\nFROM u;\nFROM u\n|> SELECT b;\nDELETE FROM t;\nunsupported:dml;\n")
    first, second, third = read_cases(path)
    assert (first.line, first.sql, first.expected, first.schema, first.execute, first.analyze) == (
        2, "SELECT a FROM t", "FROM t\n|> SELECT a", "singers", True, True)
    assert (second.line, second.sql, second.schema, second.execute) == (8, "SELECT b\nFROM u", None, False)
    assert third.refused and not third.execute and third.id == "family.sql:12"


def test_every_family_has_cases():
    families = {case.family for case in CASES}
    assert {"core", "joins", "aggregate", "subqueries", "set_operations", "semantics", "dates", "casts",
            "reasons", "sqlite_constructs"} <= families


def test_parse_error_is_a_reason():
    result = decompile("SELECT FROM WHERE", SCHEMA)
    assert result.pipe_sql is None and result.reason.startswith("parse_error: ")


def test_operators_are_the_lines():
    result = decompile("SELECT name FROM singer WHERE age > 20 ORDER BY name", SCHEMA)
    assert result.operators == ("FROM singer", "|> WHERE Age > 20", "|> SELECT Name", "|> ORDER BY Name")


def test_split_operators_joins_with_line_to_from():
    pipe = "WITH a AS (FROM t |> SELECT x)\nFROM a\n|> WHERE x IN (FROM u |> SELECT y)\n|> SELECT x"
    assert split_operators(pipe) == [
        "WITH a AS (FROM t |> SELECT x)\nFROM a", "|> WHERE x IN (FROM u |> SELECT y)", "|> SELECT x"]


def test_split_operators_ignores_pipes_in_strings():
    assert split_operators("FROM t\n|> WHERE a = '|> x'") == ["FROM t", "|> WHERE a = '|> x'"]


def test_deterministic():
    sql = "SELECT T1.name, count(*) FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id GROUP BY T1.name"
    assert len({decompile(sql, SCHEMA).pipe_sql for _ in range(3)}) == 1
