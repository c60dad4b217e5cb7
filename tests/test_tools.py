"""The five agent tools: real outputs, bounds, errors as text, and a dispatcher that never raises."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies

from pipesql.agent import schema_text
from pipesql.sql.schema import read_sqlite_schema
from pipesql.agent.tools import (CHAR_CAP, ROW_CAP, SAMPLE_LIMIT_MAX, TOOL_NAMES, TOOL_SPECS, Toolbox, format_result, to_sqlite,
                           ToolError)
from pipesql.sql.execute import connect_readonly, execute


def build_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE dept (dept_id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE employee (emp_id INTEGER PRIMARY KEY, name TEXT, salary REAL, note TEXT,
                               dept_id INTEGER REFERENCES dept(dept_id));
        CREATE TABLE numbers (n INTEGER);
        """
    )
    conn.executemany("INSERT INTO dept VALUES (?, ?)", [(1, "Sales"), (2, "R&D"), (3, "Ops")])
    conn.executemany("INSERT INTO employee VALUES (?, ?, ?, ?, ?)",
                     [(i, f"emp{i:02d}", 1000.0 + 10 * i, "n" * 300, 1 + i % 3) for i in range(1, 51)])
    conn.executemany("INSERT INTO numbers VALUES (?)", [(i,) for i in range(2000)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_db(tmp_path / "company.sqlite")


@pytest.fixture()
def toolbox(db: Path):
    with Toolbox(db) as box:
        yield box


def test_specs_are_openai_function_tools() -> None:
    assert TOOL_NAMES == ("list_tables", "describe_table", "sample_data", "execute_pipe_sql", "validate_pipe_sql")
    for spec in TOOL_SPECS:
        assert spec["type"] == "function" and set(spec["function"]) == {"name", "description", "parameters"}
        jsonschema.Draft202012Validator.check_schema(spec["function"]["parameters"])
    json.dumps(TOOL_SPECS)  # serialisable as the `tools` field


def test_list_tables_counts_are_real(toolbox: Toolbox) -> None:
    assert toolbox.call("list_tables").splitlines() == [
        "dept (2 columns, 3 rows)", "employee (5 columns, 50 rows)", "numbers (1 columns, 2000 rows)"]


def test_describe_table_is_the_prompt_schema_text(toolbox: Toolbox, db: Path) -> None:
    text = toolbox.call("describe_table", {"table": "EMPLOYEE"})
    assert text in schema_text.schema_text(db, max_chars=None)
    assert "dept_id INTEGER REFERENCES dept(dept_id)" in text and "emp_id INTEGER PRIMARY KEY" in text
    missing = toolbox.call("describe_table", {"table": "staff"})
    assert missing.startswith("Error: no table named 'staff'") and "dept, employee, numbers" in missing


def test_sample_data_rows_and_limit_bounds(toolbox: Toolbox, db: Path) -> None:
    lines = toolbox.call("sample_data", '{"table": "dept", "limit": 2}').splitlines()
    assert lines == ["dept_id | name", "1 | 'Sales'", "2 | 'R&D'", "(2 rows)"]
    many = toolbox.call("sample_data", {"table": "numbers", "limit": 1000}).splitlines()
    assert len(many) == 1 + SAMPLE_LIMIT_MAX + 1
    assert toolbox.call("sample_data", {"table": "numbers", "limit": "x"}).startswith("Error: limit must be an integer")
    # long cells are cut
    wide = toolbox.call("sample_data", {"table": "employee", "limit": 1})
    assert "n" * 300 not in wide and "…" in wide


def test_a_table_whose_name_needs_quoting_is_listed_described_and_sampled(tmp_path: Path) -> None:
    """SQLite runs the catalog tools' queries, so names are quoted for SQLite there (GoogleSQL's
    backtick escape is no SQLite identifier); the description the model reads is GoogleSQL."""
    path = tmp_path / "odd.sqlite"
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "odd`name" ("a""b" INTEGER PRIMARY KEY, "c d" TEXT)')
    conn.executemany('INSERT INTO "odd`name" VALUES (?, ?)', [(1, "x"), (2, "y")])
    conn.commit()
    conn.close()
    with Toolbox(path) as box:
        assert box.call("list_tables") == "odd`name (2 columns, 2 rows)"
        described = box.call("describe_table", {"table": "odd`name"})
        assert described.startswith("CREATE TABLE `odd\\`name` (") and "'x'" in described, described
        assert box.call("sample_data", {"table": "odd`name", "limit": 5}).splitlines() == [
            'a"b | c d', "1 | 'x'", "2 | 'y'", "(2 rows)"]


def test_execute_pipe_sql_returns_the_real_result(toolbox: Toolbox, db: Path) -> None:
    sql = "FROM employee\n|> WHERE dept_id = 2\n|> AGGREGATE COUNT(*) AS n, MAX(salary) AS top"
    conn = connect_readonly(db)
    expected = execute(conn, "SELECT COUNT(*), MAX(salary) FROM employee WHERE dept_id = 2")
    conn.close()
    assert toolbox.call("execute_pipe_sql", {"sql": sql}) == f"n | top\n{expected.rows[0][0]} | {expected.rows[0][1]!r}\n(1 row)"


def test_execute_pipe_sql_is_bounded(toolbox: Toolbox, tmp_path: Path) -> None:
    rows = toolbox.call("execute_pipe_sql", {"sql": "FROM numbers |> SELECT n"}).splitlines()
    assert len(rows) == 1 + ROW_CAP + 1 and rows[-1] == f"(first {ROW_CAP} rows shown; the result has more)"
    wide = toolbox.call("execute_pipe_sql", {"sql": "FROM employee |> SELECT note, note AS b, note AS c"})
    assert len(wide) <= CHAR_CAP and wide.endswith(f"(output cut at {CHAR_CAP} characters)")
    with Toolbox(build_db(tmp_path / "other.sqlite"), row_cap=5, char_cap=80) as small:
        out = small.call("execute_pipe_sql", {"sql": "FROM numbers"})
        assert out.splitlines()[1:6] == ["0", "1", "2", "3", "4"] and len(out) <= 80


def test_execute_times_out_but_validate_does_not_run(db: Path) -> None:
    heavy = "FROM numbers AS a\n|> CROSS JOIN numbers AS b\n|> CROSS JOIN numbers AS c\n|> AGGREGATE COUNT(*) AS n"
    with Toolbox(db, timeout_s=0.3) as box:
        start = time.monotonic()
        out = box.call("execute_pipe_sql", {"sql": heavy})
        assert out.startswith("Error:") and "exceeded" in out
        assert time.monotonic() - start < 5
        start = time.monotonic()
        assert box.call("validate_pipe_sql", {"sql": heavy}).startswith("OK")
        assert time.monotonic() - start < 2


def test_errors_come_back_as_text(toolbox: Toolbox) -> None:
    assert toolbox.call("execute_pipe_sql", {"sql": "FROM employee |> WHERE nope = 1"}).startswith(
        "Error: the database rejected the query: no such column")
    assert toolbox.call("validate_pipe_sql", {"sql": "FROM employee |> WHERE nope = 1"}).startswith(
        "Error: the query does not compile")
    assert toolbox.call("validate_pipe_sql", {"sql": "FROM employee |> WHERE (("}).startswith("Error:")
    assert toolbox.call("validate_pipe_sql", {"sql": "FROM employee |> SELECT name"}).startswith("OK")
    assert toolbox.call("drop_table", {}).startswith("Error: unknown tool 'drop_table'")
    assert toolbox.call("list_tables", "{not json").startswith("Error: arguments are not valid JSON")
    assert toolbox.call("list_tables", "[1]").startswith("Error: arguments must be a JSON object")
    assert toolbox.call("describe_table", {}).startswith("Error: describe_table needs the argument 'table'")
    assert toolbox.call("list_tables", {"x": 1}).startswith("Error: list_tables takes no argument 'x'")
    assert toolbox.call("execute_pipe_sql", {"sql": ""}).startswith("Error: sql must be a non-empty string")
    assert toolbox.call("list_tables", None).startswith("dept")


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_db(tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite")


@settings(max_examples=60, deadline=None)
@given(name=strategies.sampled_from(TOOL_NAMES + ("nope",)),
       arguments=strategies.one_of(strategies.none(), strategies.text(max_size=40), strategies.dictionaries(
           strategies.sampled_from(["table", "limit", "sql", "x"]),
           strategies.one_of(strategies.text(max_size=30), strategies.integers(), strategies.none()), max_size=3)))
def test_call_never_raises(shared_db: Path, name: str, arguments: object) -> None:
    for path in (shared_db, shared_db.with_name("does-not-exist.sqlite")):
        with Toolbox(path, timeout_s=1.0) as box:
            assert isinstance(box.call(name, arguments), str)


def test_missing_database_is_reported_not_raised(tmp_path: Path) -> None:
    with Toolbox(tmp_path / "gone.sqlite") as box:
        out = box.call("list_tables", {})
        assert out.startswith("Error:") and "gone.sqlite" in out


def test_results_are_cached_and_the_database_untouched(db: Path) -> None:
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    with Toolbox(db) as box:
        first = box.run_pipe("FROM dept |> SELECT name")
        assert box.run_pipe("FROM dept |> SELECT name") is first
        with pytest.raises(ToolError):
            box.run_pipe("FROM dept |> SELECT nope")
        for name in TOOL_NAMES:
            box.call(name, {"table": "dept"} if "table" in name or name == "sample_data" else
                     {"sql": "FROM dept"} if "sql" in name else {})
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


def test_round_trip_and_format_helpers() -> None:
    assert "SELECT" in to_sqlite("FROM t |> SELECT a").upper()
    with pytest.raises(ToolError, match="empty query"):
        to_sqlite("   ")
    with pytest.raises(ToolError, match="cannot translate"):
        to_sqlite("FROM t |> WHERE ((")


def test_format_result_marks_truncation(db: Path) -> None:
    conn = connect_readonly(db)
    result = execute(conn, "SELECT n FROM numbers", row_cap=3)
    conn.close()
    assert format_result(result) == "n\n0\n1\n2\n(first 3 rows shown; the result has more)"
    assert read_sqlite_schema(db).table("numbers") is not None


@pytest.fixture(scope="module")
def zetasql_compiled() -> Path:
    # Compiled once per machine (about 70 s the first time, then cached), so a fresh machine runs
    # this test too rather than skipping it.
    from pipesql.sql.googlesql import ensure_compiled

    return ensure_compiled()


def test_validate_with_googlesql_analysis(db: Path, zetasql_compiled: Path) -> None:
    with Toolbox(db, googlesql=True) as box:
        ok = box.call("validate_pipe_sql", {"sql": "FROM employee |> WHERE salary > 1000 |> SELECT name"})
        assert ok.splitlines() == ["OK: the query parses as GoogleSQL and compiles against the database.",
                                   "GoogleSQL analysis: OK."]
        # SQLite compares INTEGER with TEXT; GoogleSQL refuses: a note, not an error
        strict = box.call("validate_pipe_sql", {"sql": "FROM employee |> WHERE emp_id = name |> SELECT name"})
        assert strict.startswith("OK:") and "GoogleSQL analysis: rejected:" in strict
    with Toolbox(db) as box:  # off by default
        assert "GoogleSQL analysis" not in box.call("validate_pipe_sql", {"sql": "FROM employee |> SELECT name"})


def test_describe_wide_table_keeps_every_column(tmp_path: Path) -> None:
    path = tmp_path / "wide.sqlite"
    conn = sqlite3.connect(path)
    columns = [f"measurement_column_{i:03d}" for i in range(60)]
    conn.execute(f"CREATE TABLE wide ({', '.join(c + ' TEXT' for c in columns)})")
    conn.execute(f"INSERT INTO wide VALUES ({', '.join('?' * len(columns))})", ["a fairly long example value"] * len(columns))
    conn.commit()
    conn.close()
    with Toolbox(path, catalog_char_cap=2500) as box:
        text = box.call("describe_table", {"table": "wide"})
    assert all(c in text for c in columns) and len(text) <= 2500
    assert "a fairly long example value" not in text  # values went first


def test_googlesql_note_none_means_ok(db: Path, monkeypatch) -> None:
    """analyze() returns None for a query GoogleSQL accepts: the note says OK, never 'None'."""
    from pipesql.sql import googlesql
    from pipesql.agent.tools.query import googlesql_note as _googlesql_note

    schema = read_sqlite_schema(db)
    monkeypatch.setattr(googlesql, "analyze", lambda sql, schema: None)
    assert _googlesql_note("FROM employee |> SELECT name", schema) == "GoogleSQL analysis: OK."
    with Toolbox(db, googlesql=True) as box:
        text = box.call("validate_pipe_sql", {"sql": "FROM employee |> SELECT name"})
    assert text.splitlines()[-1] == "GoogleSQL analysis: OK." and "None" not in text
    monkeypatch.setattr(googlesql, "analyze", lambda sql, schema: "Unrecognized name: x [at 1:8]")
    assert _googlesql_note("FROM employee |> SELECT x", schema) == "GoogleSQL analysis: rejected: Unrecognized name: x [at 1:8]"


def test_the_tools_use_the_session_and_only_the_package_knows_the_dispatcher() -> None:
    """No import circle: the tool functions sit on the session; the dispatcher sits above them."""
    import ast

    folder = Path(__file__).resolve().parents[1] / "pipesql" / "agent" / "tools"
    importers = {path.name for path in folder.glob("*.py")
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.ImportFrom) and node.module == "pipesql.agent.tools.toolbox"}
    assert importers == {"__init__.py"}


def test_the_memo_remembers_failures_except_transient_ones() -> None:
    from pipesql.agent.tools.memo import Memo

    calls = []

    def compute(key: str):
        calls.append(key)
        if key.startswith("slow"):
            raise ToolError("timed out", transient=True)
        if key.startswith("bad"):
            raise ToolError("no such table")
        return key.upper()

    memo = Memo(2)
    for _ in range(2):
        assert memo.get("a", compute) == "A"
        with pytest.raises(ToolError, match="no such table"):
            memo.get("bad", compute)
        with pytest.raises(ToolError, match="timed out"):
            memo.get("slow", compute)
    assert calls == ["a", "bad", "slow", "slow"]  # the failure once, the load-dependent one each time
    memo.get("c", compute)  # two entries at most: "a", used least recently, is dropped
    memo.get("a", compute)
    assert calls[-2:] == ["c", "a"]
