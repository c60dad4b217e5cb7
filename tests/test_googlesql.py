"""ZetaSQL: analysis, execution over a SQLite database, decoding, limits, the compiled-module cache.

The first start on a machine compiles the module (about 70 s, once; cached in $PIPESQL_CACHE
or ~/.cache/pipesql); later starts take about a second. All tests share one instance.
"""

from __future__ import annotations

import sqlite3

import pytest

from pipesql.sql import googlesql
from pipesql.sql.schema import read_sqlite_schema


@pytest.fixture(scope="module")
def engine() -> googlesql.GoogleSQL:
    return googlesql.instance()


def test_analyze_accepts_pipe_syntax(engine, library_db):
    schema = read_sqlite_schema(library_db)
    assert googlesql.analyze("FROM books |> WHERE pages > 300 |> AGGREGATE COUNT(*) AS n GROUP BY genre "
                             "|> ORDER BY n DESC", schema) is None


@pytest.mark.parametrize("sql, message", [
    ("FROM books |> SELECT nope", "Unrecognized name: nope"),
    ("FROM nowhere", "Table not found: nowhere"),
    # the column types are GoogleSQL's: an INT64 key does not compare with a STRING
    ("FROM books |> WHERE book_id = 'x'", "No matching signature"),
    ("FROM books |> WHERE", "Syntax error"),
])
def test_analyze_reports_the_error(engine, library_db, sql, message):
    error = googlesql.analyze(sql, read_sqlite_schema(library_db))
    assert error is not None and message in error


def test_catalog_types_follow_the_decompiler(library_db):
    types = googlesql.catalog_types(read_sqlite_schema(library_db))
    assert types["books"] == {"book_id": "INT64", "title": "STRING", "author_id": "INT64", "genre": "STRING",
                              "published_year": "INT64", "pages": "INT64", "price": "FLOAT64"}
    assert types["loans"]["loan_date"] == "STRING"  # dates are ISO text in the benchmarks


def test_execute_agrees_with_sqlite(engine, library_db):
    result = googlesql.execute("FROM books |> AGGREGATE COUNT(*) AS n, SUM(pages) AS pages GROUP BY genre "
                               "|> ORDER BY genre", library_db)
    conn = sqlite3.connect(library_db)
    expected = conn.execute("SELECT genre, count(*), sum(pages) FROM books GROUP BY genre ORDER BY genre").fetchall()
    conn.close()
    assert result.columns == ("genre", "n", "pages")
    assert list(result.rows) == expected and not result.truncated


def test_results_are_decoded_like_sqlite(engine, library_db):
    result = googlesql.execute(
        "FROM books |> LIMIT 1 |> SELECT CAST(1.5 AS NUMERIC) AS num, DATE '2024-02-29' AS d, "
        "DATETIME '2024-02-29 13:05:09' AS dt, TRUE AS b, CAST(NULL AS STRING) AS nothing, 7 / 2 AS half", library_db)
    assert result.rows == ((1.5, "2024-02-29", "2024-02-29 13:05:09", 1, None, 3.5),)


def test_row_cap(engine, library_db):
    result = googlesql.execute("FROM books |> SELECT title", library_db, row_cap=5)
    assert len(result.rows) == 5 and result.truncated


def test_unloadable_database_names_the_column(engine, demo_corpus):
    flights = demo_corpus / "database" / "flights" / "flights.sqlite"
    with pytest.raises(googlesql.NotRepresentable, match=r"flights\.gate \(INT64\)"):
        googlesql.execute("FROM airports |> SELECT code", flights)


def test_analysis_error_on_execute(engine, library_db):
    with pytest.raises(googlesql.GoogleSQLAnalysisError, match="Unrecognized name"):
        googlesql.execute("FROM books |> SELECT nope", library_db)


RUNAWAY = ("WITH RECURSIVE c AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000000) "
           "SELECT COUNT(*) AS n FROM c")


def test_runaway_query_times_out_and_the_engine_recovers(engine, library_db):
    with pytest.raises(googlesql.GoogleSQLTimeout):
        googlesql.execute(RUNAWAY, library_db, timeout_s=0.5)
    assert googlesql.execute("FROM books |> AGGREGATE COUNT(*) AS n", library_db).rows == ((120,),)


def test_a_timeout_replaces_the_execution_instance_only(engine, library_db):
    schema = read_sqlite_schema(library_db)
    assert engine.analyze("FROM books |> SELECT title", schema) is None
    analysis, catalogs = engine._analysis.client, dict(engine._analysis.catalogs.items())
    execution = engine._executor().client
    with pytest.raises(googlesql.GoogleSQLTimeout):
        engine.execute(RUNAWAY, library_db, timeout_s=0.5)
    assert engine._executor().client is not execution  # the trapped instance is not called again
    assert engine._analysis.client is analysis and dict(engine._analysis.catalogs.items()) == catalogs
    assert "Unrecognized name: nope" in engine.analyze("FROM books |> SELECT nope", schema)
    with pytest.raises(googlesql.GoogleSQLAnalysisError, match="Unrecognized name"):
        engine.execute("FROM books |> SELECT nope", library_db)  # the database is registered again


def test_a_failure_while_running_is_not_an_analysis_error(engine, library_db):
    with pytest.raises(googlesql.GoogleSQLError, match="division by zero") as failure:
        engine.execute("FROM books |> SELECT 1 / (pages - pages) AS x", library_db)
    assert not isinstance(failure.value, googlesql.GoogleSQLAnalysisError)
    assert engine.execute("FROM books |> AGGREGATE COUNT(*) AS n", library_db).columns == ("n",)


@pytest.mark.parametrize("value, type_name, expected", [
    (3.0, "INT64", 3), ("12", "INT64", 12), (7, "STRING", "7"), (1.5, "STRING", "1.5"), (5, "FLOAT64", 5.0),
    ("2.5", "FLOAT64", 2.5), (None, "INT64", None), (b"ab", "STRING", "ab"), (1, "BOOL", True),
])
def test_coerce_lossless(value, type_name, expected):
    assert googlesql.coerce(value, type_name) == expected


@pytest.mark.parametrize("value, type_name", [("x204", "INT64"), ("", "FLOAT64"), (2.5, "INT64"), (b"x", "INT64")])
def test_coerce_refuses_lossy(value, type_name):
    with pytest.raises(ValueError):
        googlesql.coerce(value, type_name)


def test_cache_location_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPESQL_CACHE", str(tmp_path))
    path = googlesql.compiled_module_path()
    assert path.parent == tmp_path and path.name.startswith("zetasql-") and path.suffix == ".cwasm"


def test_empty_tables_are_loaded_as_empty(engine, tmp_path):
    path = tmp_path / "empty.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t (a INTEGER, b TEXT); CREATE TABLE u (c REAL); INSERT INTO u VALUES (1.5);")
    conn.commit()
    conn.close()
    assert googlesql.execute("FROM t |> AGGREGATE COUNT(*) AS n", path).rows == ((0,),)
    assert googlesql.execute("FROM u |> CROSS JOIN t |> SELECT c", path).rows == ()


def test_predicted_work_tells_nested_loops_from_hash_joins():
    rows = {"airports": 100, "flights": 1200}
    hashed = "SELECT * FROM airports AS a JOIN flights AS f ON a.code = f.dest"
    nested = "SELECT * FROM airports AS a JOIN flights AS f ON a.code = f.dest OR a.code = f.source"
    per_row = "SELECT name FROM airports WHERE code NOT IN (SELECT source FROM flights UNION SELECT dest FROM flights)"
    assert googlesql.predicted_work(hashed, rows) == 1300
    assert googlesql.predicted_work(nested, rows) == 120_000
    assert googlesql.predicted_work(per_row, rows) == 100 + 100 * 2400
    assert googlesql.predicted_work("SELECT FROM WHERE ((", rows) == 0  # unparseable: the engine decides


def test_registered_catalogs_are_bounded_and_a_dropped_one_comes_back(engine):
    from pipesql.sql.googlesql.runtime import _REGISTERED_CATALOGS
    from pipesql.sql.schema import Column, DatabaseSchema, Table

    schemas = [DatabaseSchema((Table(f"t{i}", (Column("a", "INTEGER"),)),)) for i in range(_REGISTERED_CATALOGS + 1)]
    for i, schema in enumerate(schemas):
        assert engine.analyze(f"FROM t{i} |> SELECT a", schema) is None
    catalogs = engine._analysis.catalogs
    assert len(catalogs) == _REGISTERED_CATALOGS and ("schema", schemas[0]) not in catalogs  # the oldest dropped
    assert engine.analyze("FROM t0 |> SELECT a", schemas[0]) is None  # registered again when needed
    assert ("schema", schemas[0]) in catalogs and ("schema", schemas[1]) not in catalogs
