"""The two tools that take a pipe query: ``execute_pipe_sql`` runs it, ``validate_pipe_sql``
checks it without running it. Both go through one round trip, :func:`to_sqlite`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipesql.agent.tools.output import cut
from pipesql.agent.tools.specs import ToolError, require_sql
from pipesql.sql.execute import QueryError
from pipesql.sql.schema import DatabaseSchema

if TYPE_CHECKING:
    from pipesql.agent.tools.toolbox import Toolbox


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


def execute_pipe_sql(box: "Toolbox", sql: str) -> str:
    return box.run_pipe(require_sql(sql))


def validate_pipe_sql(box: "Toolbox", sql: str) -> str:
    # The round trip parses the text as GoogleSQL (sqlglot, BigQuery dialect): a syntax
    # error surfaces there. EXPLAIN then compiles the SQLite form (names, types of
    # functions) without running it, so a slow query validates as fast as a quick one.
    sqlite_sql = box.translate(require_sql(sql))
    try:
        box.execute("EXPLAIN " + sqlite_sql, row_cap=0)
    except QueryError as error:
        raise ToolError(f"the query does not compile against the database: {error}") from None
    notes = ["OK: the query parses as GoogleSQL and compiles against the database."]
    if box.googlesql:
        notes.append(googlesql_note(sql, box.schema))
    return cut("\n".join(notes), box.char_cap)


def googlesql_note(sql: str, schema: DatabaseSchema) -> str:
    """ZetaSQL's verdict as one line, or why there is none. A note, not an error: GoogleSQL is
    stricter than SQLite (no INT64 = STRING), so a query the database runs may be refused here."""
    try:
        from pipesql.sql import googlesql
    except ImportError as error:
        return f"GoogleSQL analysis: skipped ({error})."
    try:
        verdict = googlesql.analyze(sql, schema)
    except Exception as error:  # engine unavailable, out of memory, ...: optional, so never fatal
        return f"GoogleSQL analysis: skipped ({type(error).__name__}: {error})."
    return "GoogleSQL analysis: OK." if verdict is None else f"GoogleSQL analysis: rejected: {verdict}"
