"""The two tools that take a pipe query: ``execute_pipe_sql`` runs it, ``validate_pipe_sql``
checks it without running it. Both go through one round trip,
:func:`~pipesql.agent.tools.session.to_sqlite`."""

from __future__ import annotations

from pipesql.agent.tools.output import cut
from pipesql.agent.tools.session import Session
from pipesql.agent.tools.specs import ToolError, require_sql
from pipesql.sql.execute import QueryError
from pipesql.sql.schema import DatabaseSchema


def execute_pipe_sql(session: Session, sql: str) -> str:
    return session.run_pipe(require_sql(sql))


def validate_pipe_sql(session: Session, sql: str) -> str:
    # The round trip parses the text as GoogleSQL (sqlglot, BigQuery dialect): a syntax
    # error surfaces there. EXPLAIN then compiles the SQLite form (names, types of
    # functions) without running it, so a slow query validates as fast as a quick one.
    sqlite_sql = session.translate(require_sql(sql))
    try:
        session.execute("EXPLAIN " + sqlite_sql, row_cap=0)
    except QueryError as error:
        raise ToolError(f"the query does not compile against the database: {error}") from None
    notes = ["OK: the query parses as GoogleSQL and compiles against the database."]
    if session.googlesql:
        notes.append(googlesql_note(sql, session.schema))
    return cut("\n".join(notes), session.char_cap)


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
