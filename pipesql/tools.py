"""The five agent tools: one implementation for training-data generation, the evaluation agent
and the server.

- ``list_tables()``: every table with its column and row counts.
- ``describe_table(table)``: the table's ``CREATE TABLE`` text with example values, exactly as
  in the prompt schema (:mod:`pipesql.schema_text`).
- ``sample_data(table, limit)``: the first ``limit`` rows (1 to ``SAMPLE_LIMIT_MAX``).
- ``execute_pipe_sql(sql)``: pipe SQL translated to SQLite (:func:`pipesql.transpile.pipe_to_sqlite`)
  and run read-only with a time limit; the first ``row_cap`` rows come back.
- ``validate_pipe_sql(sql)``: parses as GoogleSQL (sqlglot, BigQuery dialect), translates, and
  compiles against the database without running it (SQLite ``EXPLAIN``); optionally also
  analyzed by ZetaSQL (:mod:`pipesql.googlesql`) when that is installed and asked for.

Every output is real text from the database, bounded: at most ``row_cap`` rows (default 20),
cells cut to ``CELL_CHARS`` characters, and the whole output cut to ``char_cap`` characters
(default 2,000), with a line saying so. :meth:`Toolbox.call` never raises: a bad tool name, bad
arguments or a failing query come back as a line starting with ``Error:`` that the model can
read and act on.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from pipesql import schema_text as schema_text_module
from pipesql.schema import DatabaseSchema, Table, schema_from_connection
from pipesql.sqlexec import QueryError, QueryResult, connect_readonly, execute

ROW_CAP = 20
CHAR_CAP = 2_000
CELL_CHARS = 60
SAMPLE_LIMIT_DEFAULT = 3
SAMPLE_LIMIT_MAX = 10
TIMEOUT_S = 10.0
_CACHE_SIZE = 512


class _Memo:
    """A bounded LRU of ``compute(key)`` that remembers :class:`ToolError` failures too, so a
    query that failed once is not translated or run again."""

    def __init__(self, size: int):
        self._size = size
        self._entries: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str, compute: Callable[[str], Any]) -> Any:
        if key in self._entries:
            self._entries.move_to_end(key)
            outcome = self._entries[key]
        else:
            try:
                outcome = compute(key)
            except ToolError as error:
                outcome = error
            self._entries[key] = outcome
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        if isinstance(outcome, ToolError):
            raise outcome
        return outcome

TOOL_SPECS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "list_tables",
            "description": "List the tables of the database with their column and row counts.",
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "describe_table",
            "description": "Show a table's columns with their types, primary and foreign keys, and a few example values.",
            "parameters": {
                "type": "object",
                "properties": {"table": {"type": "string", "description": "Table name."}},
                "required": ["table"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "sample_data",
            "description": f"Show the first rows of a table (at most {SAMPLE_LIMIT_MAX}).",
            "parameters": {
                "type": "object",
                "properties": {
                    "table": {"type": "string", "description": "Table name."},
                    "limit": {"type": "integer", "description": f"Number of rows, 1 to {SAMPLE_LIMIT_MAX}.",
                              "default": SAMPLE_LIMIT_DEFAULT},
                },
                "required": ["table"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "execute_pipe_sql",
            "description": (f"Run a GoogleSQL pipe query (FROM ... |> ...) on the database and show the result "
                            f"(at most {ROW_CAP} rows)."),
            "parameters": {
                "type": "object",
                "properties": {"sql": {"type": "string", "description": "The pipe query."}},
                "required": ["sql"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "validate_pipe_sql",
            "description": "Check that a GoogleSQL pipe query parses and compiles against the database, without running it.",
            "parameters": {
                "type": "object",
                "properties": {"sql": {"type": "string", "description": "The pipe query."}},
                "required": ["sql"],
            },
        },
    },
]

TOOL_NAMES: tuple[str, ...] = tuple(spec["function"]["name"] for spec in TOOL_SPECS)


class ToolError(Exception):
    """A tool could not do what was asked; the message is shown to the model."""


def to_sqlite(pipe_sql: str) -> str:
    """The round trip every tool uses: pipe SQL -> SQLite SQL, or :class:`ToolError`."""
    from pipesql.transpile import pipe_to_sqlite

    if not pipe_sql or not pipe_sql.strip():
        raise ToolError("empty query")
    try:
        return pipe_to_sqlite(pipe_sql)
    except Exception as error:  # the translator may raise anything sqlglot raises
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ToolError(f"cannot translate the query: {message}") from None


def cut(text: str, char_cap: int) -> str:
    """``text`` cut at a line boundary to at most ``char_cap`` characters, saying so."""
    if len(text) <= char_cap:
        return text
    note = f"\n... (output cut at {char_cap} characters)"
    head = text[: max(0, char_cap - len(note))]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    return head + note


def format_result(result: QueryResult, cell_chars: int = CELL_CHARS) -> str:
    """Columns on the first line, then one line per row, cells separated by `` | ``."""
    lines = [" | ".join(result.columns)]
    lines += [" | ".join(schema_text_module.format_value(v, cell_chars) for v in row) for row in result.rows]
    count = len(result.rows)
    if result.truncated:
        lines.append(f"(first {count} rows shown; the result has more)")
    else:
        lines.append(f"({count} row{'' if count == 1 else 's'})")
    return "\n".join(lines)


def _error_text(error: BaseException) -> str:
    return f"Error: {error}"


class Toolbox:
    """The tools bound to one SQLite database, opened read-only on first use.

    Query results are cached by SQL text, so a generator that checks a prefix and later shows
    it in a tool call pays for one execution.
    """

    def __init__(self, db_path: str | Path, *, row_cap: int = ROW_CAP, char_cap: int = CHAR_CAP,
                 timeout_s: float = TIMEOUT_S, googlesql: bool = False):
        self.db_path = Path(db_path)
        self.row_cap = row_cap
        self.char_cap = char_cap
        self.timeout_s = timeout_s
        self.googlesql = googlesql
        self._conn: sqlite3.Connection | None = None
        self._schema: DatabaseSchema | None = None
        self._row_counts: dict[str, int | None] = {}
        self._results = _Memo(_CACHE_SIZE)
        self._translations = _Memo(_CACHE_SIZE)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect_readonly(self.db_path)
        return self._conn

    @property
    def schema(self) -> DatabaseSchema:
        if self._schema is None:
            self._schema = schema_from_connection(self.conn)
        return self._schema

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Toolbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _table(self, name: str) -> Table:
        if not isinstance(name, str) or not name.strip():
            raise ToolError("a table name is required")
        table = self.schema.table(name.strip().strip("`\"[]"))
        if table is None:
            available = ", ".join(t.name for t in self.schema.tables)
            raise ToolError(f"no table named {name!r}. Tables: {available}")
        return table

    def _row_count(self, table: Table) -> int | None:
        if table.name not in self._row_counts:
            try:
                result = execute(self.conn, f'SELECT COUNT(*) FROM "{table.name.replace(chr(34), chr(34) * 2)}"',
                                 timeout_s=self.timeout_s, row_cap=1)
                self._row_counts[table.name] = int(result.rows[0][0])
            except QueryError:
                self._row_counts[table.name] = None
        return self._row_counts[table.name]

    def translate(self, pipe_sql: str) -> str:
        """:func:`to_sqlite`, cached by SQL text (bounded LRU)."""
        return self._translations.get(pipe_sql.strip(), to_sqlite)

    def run_pipe(self, pipe_sql: str) -> QueryResult:
        """Translate and run a pipe query (first ``row_cap`` rows); raises :class:`ToolError`.

        Results and failures are cached by SQL text (bounded LRU)."""
        return self._results.get(pipe_sql.strip(), self._run_uncached)

    def _run_uncached(self, pipe_sql: str) -> QueryResult:
        sqlite_sql = self.translate(pipe_sql)
        try:
            return execute(self.conn, sqlite_sql, timeout_s=self.timeout_s, row_cap=self.row_cap)
        except QueryError as error:
            raise ToolError(f"the database rejected the query: {error}") from None

    # -- the five tools ---------------------------------------------------------------------

    def list_tables(self) -> str:
        lines = []
        for table in self.schema.tables:
            rows = self._row_count(table)
            count = "unknown number of rows" if rows is None else f"{rows} row{'' if rows == 1 else 's'}"
            lines.append(f"{table.name} ({len(table.columns)} columns, {count})")
        return cut("\n".join(lines) if lines else "(no tables)", self.char_cap)

    def describe_table(self, table: str) -> str:
        found = self._table(table)
        _, values = schema_text_module.database_values(self.db_path)
        column_values = values[found.name].values if found.name in values else None
        # Wide tables (BIRD has ~100 columns) lose example values before they lose columns.
        for per_column in range(schema_text_module.DEFAULT_VALUES_PER_COLUMN, -1, -1):
            text = schema_text_module.render_table(found, column_values, values_per_column=per_column)
            if len(text) <= self.char_cap:
                break
        return cut(text, self.char_cap)

    def sample_data(self, table: str, limit: int = SAMPLE_LIMIT_DEFAULT) -> str:
        found = self._table(table)
        try:
            limit = int(limit)
        except (TypeError, ValueError):
            raise ToolError(f"limit must be an integer, got {limit!r}") from None
        limit = max(1, min(limit, SAMPLE_LIMIT_MAX))
        quoted = '"' + found.name.replace('"', '""') + '"'
        try:
            result = execute(self.conn, f"SELECT * FROM {quoted} LIMIT {limit}", timeout_s=self.timeout_s, row_cap=limit)
        except QueryError as error:
            raise ToolError(f"cannot read {found.name}: {error}") from None
        return cut(format_result(result), self.char_cap)

    def execute_pipe_sql(self, sql: str) -> str:
        return cut(format_result(self.run_pipe(_require_sql(sql))), self.char_cap)

    def validate_pipe_sql(self, sql: str) -> str:
        # The round trip parses the text as GoogleSQL (sqlglot, BigQuery dialect): a syntax
        # error surfaces there. EXPLAIN then compiles the SQLite form (names, types of
        # functions) without running it, so a slow query validates as fast as a quick one.
        sqlite_sql = self.translate(_require_sql(sql))
        try:
            execute(self.conn, "EXPLAIN " + sqlite_sql, timeout_s=self.timeout_s, row_cap=0)
        except QueryError as error:
            raise ToolError(f"the query does not compile against the database: {error}") from None
        notes = ["OK: the query parses as GoogleSQL and compiles against the database."]
        if self.googlesql:
            notes.append(_googlesql_note(sql, self.schema))
        return cut("\n".join(notes), self.char_cap)

    # -- dispatch -------------------------------------------------------------------------------

    def call(self, name: str, arguments: str | dict | None = None) -> str:
        """Run tool ``name`` with ``arguments`` (a JSON object or its text). Never raises."""
        try:
            tool = self._dispatch().get(name)
            if tool is None:
                raise ToolError(f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}")
            return tool(**_parse_arguments(name, arguments))
        except ToolError as error:
            return _error_text(error)
        except Exception as error:  # a tool must answer, whatever happened underneath
            return _error_text(f"{type(error).__name__}: {error}")

    def _dispatch(self) -> dict[str, Callable[..., str]]:
        return {
            "list_tables": self.list_tables,
            "describe_table": self.describe_table,
            "sample_data": self.sample_data,
            "execute_pipe_sql": self.execute_pipe_sql,
            "validate_pipe_sql": self.validate_pipe_sql,
        }


def _require_sql(sql: Any) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise ToolError("sql must be a non-empty string")
    return sql


def _parse_arguments(name: str, arguments: str | dict | None) -> dict[str, Any]:
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        parsed: Any = {}
    elif isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except ValueError as error:
            raise ToolError(f"arguments are not valid JSON: {error}") from None
    else:
        parsed = arguments
    if not isinstance(parsed, dict):
        raise ToolError(f"arguments must be a JSON object, got {type(parsed).__name__}")
    spec = next(s["function"]["parameters"] for s in TOOL_SPECS if s["function"]["name"] == name)
    unexpected = sorted(set(parsed) - set(spec["properties"]))
    if unexpected:
        raise ToolError(f"{name} takes no argument {unexpected[0]!r}; it takes: {', '.join(spec['properties']) or 'nothing'}")
    missing = [key for key in spec["required"] if key not in parsed]
    if missing:
        raise ToolError(f"{name} needs the argument {missing[0]!r}")
    return parsed


def _googlesql_note(sql: str, schema: DatabaseSchema) -> str:
    """ZetaSQL's verdict as one line, or why there is none. A note, not an error: GoogleSQL is
    stricter than SQLite (no INT64 = STRING), so a query the database runs may be refused here."""
    try:
        from pipesql import googlesql
    except ImportError as error:
        return f"GoogleSQL analysis: skipped ({error})."
    try:
        verdict = googlesql.analyze(sql, schema)
    except Exception as error:  # engine unavailable, out of memory, ...: optional, so never fatal
        return f"GoogleSQL analysis: skipped ({type(error).__name__}: {error})."
    return "GoogleSQL analysis: OK." if verdict is None else f"GoogleSQL analysis: rejected: {verdict}"
