"""The session the tools share on one database: the read-only connection and its schema,
queries run within the tools' limits, and pipe SQL translated to SQLite (each cached). The tool
functions (:mod:`~pipesql.agent.tools.catalog`, :mod:`~pipesql.agent.tools.query`) take a
:class:`Session`; the dispatcher (:mod:`~pipesql.agent.tools.toolbox`) sits above them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pipesql.agent.tools.memo import Memo
from pipesql.agent.tools.output import cut, format_result
from pipesql.agent.tools.specs import CATALOG_CHAR_CAP, CHAR_CAP, ROW_CAP, TIMEOUT_S, ToolError
from pipesql.sql.execute import QueryError, QueryResult, QueryTimeout, connect_readonly, execute
from pipesql.sql.identifiers import sqlite_identifier
from pipesql.sql.isolated import ChildLost, connect_isolated
from pipesql.sql.schema import DatabaseSchema, Table, schema_from_connection

_CACHE_SIZE = 512
# Most bytes a tool query may fetch: row_cap rows of benchmark values are far smaller.
_MAX_RESULT_BYTES = 8 << 20


def to_sqlite(pipe_sql: str) -> str:
    """The round trip every tool uses: pipe SQL -> SQLite SQL, or :class:`ToolError`."""
    from pipesql.sql.transpile import pipe_to_sqlite

    if not pipe_sql or not pipe_sql.strip():
        raise ToolError("empty query")
    try:
        return pipe_to_sqlite(pipe_sql)
    except Exception as error:  # the translator may raise anything sqlglot raises
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ToolError(f"cannot translate the query: {message}") from None


class Session:
    """What the tools share about one SQLite database, opened read-only on first use: the
    connection, the schema, execution within the limits, and the round trip of pipe SQL.

    Every query goes through the sandbox (:mod:`pipesql.sql.execute`): the connection can only
    read, so no call can leave state (a TEMP table, a PRAGMA) that changes the next call's
    answer. Query answers are cached by SQL text (timeouts excepted: they depend on load), so a
    generator that checks a prefix and later shows it in a tool call pays for one execution.
    """

    def __init__(self, db_path: str | Path, *, row_cap: int = ROW_CAP, char_cap: int = CHAR_CAP,
                 catalog_char_cap: int = CATALOG_CHAR_CAP,
                 timeout_s: float = TIMEOUT_S, googlesql: bool = False):
        self.db_path = Path(db_path)
        self.row_cap = row_cap
        self.char_cap = char_cap
        self.catalog_char_cap = catalog_char_cap
        self.timeout_s = timeout_s
        self.googlesql = googlesql
        self._conn: sqlite3.Connection | None = None
        self._schema: DatabaseSchema | None = None
        self._row_counts: dict[str, int | None] = {}
        self._results = Memo(_CACHE_SIZE)
        self._translations = Memo(_CACHE_SIZE)

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

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, *, row_cap: int | None = None) -> QueryResult:
        """SQLite SQL on this database, read-only, in a child process killed at the time limit
        (:mod:`pipesql.sql.isolated`): no query a tool accepts outlives it."""
        return execute(connect_isolated(self.db_path), sql, timeout_s=self.timeout_s, row_cap=self.row_cap if row_cap is None else row_cap,
                       max_bytes=_MAX_RESULT_BYTES)

    def table(self, name: Any) -> Table:
        if not isinstance(name, str) or not name.strip():
            raise ToolError("a table name is required")
        table = self.schema.table(name.strip().strip("`\"[]"))
        if table is None:
            available = ", ".join(t.name for t in self.schema.tables)
            raise ToolError(f"no table named {name!r}. Tables: {available}")
        return table

    def row_count(self, table: Table) -> int | None:
        if table.name not in self._row_counts:
            try:
                result = self.execute(f"SELECT COUNT(*) FROM {sqlite_identifier(table.name)}", row_cap=1)
                self._row_counts[table.name] = int(result.rows[0][0])
            except (QueryTimeout, ChildLost):
                return None  # unknown this time; a quieter machine may count it
            except QueryError:
                self._row_counts[table.name] = None
        return self._row_counts[table.name]

    def translate(self, pipe_sql: str) -> str:
        """:func:`to_sqlite`, cached by SQL text (bounded LRU)."""
        return self._translations.get(pipe_sql.strip(), to_sqlite)

    def run_pipe(self, pipe_sql: str) -> str:
        """Translate and run a pipe query; its answer as the model reads it (first ``row_cap``
        rows, cells and text cut); raises :class:`ToolError`.

        Answers and failures are cached by SQL text (bounded LRU). The cache holds the cut text,
        never the rows, so it stays under ``512 * char_cap`` characters whatever queries come."""
        return self._results.get(pipe_sql.strip(), self._run_uncached)

    def _run_uncached(self, pipe_sql: str) -> str:
        sqlite_sql = self.translate(pipe_sql)
        try:
            return cut(format_result(self.execute(sqlite_sql)), self.char_cap)
        except QueryError as error:
            raise ToolError(f"the database rejected the query: {error}",
                            transient=isinstance(error, (QueryTimeout, ChildLost))) from None
