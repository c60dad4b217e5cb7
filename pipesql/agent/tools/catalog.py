"""The three tools that show what the database holds: ``list_tables``, ``describe_table`` and
``sample_data``. Each takes the :class:`~pipesql.agent.tools.session.Session` of one database
and returns bounded text."""

from __future__ import annotations

from pipesql.agent import schema_text
from pipesql.agent.tools.output import cut, format_result
from pipesql.agent.tools.session import Session
from pipesql.agent.tools.specs import SAMPLE_LIMIT_DEFAULT, SAMPLE_LIMIT_MAX, ToolError
from pipesql.sql.execute import QueryError
from pipesql.sql.identifiers import sqlite_identifier


def list_tables(session: Session) -> str:
    lines = []
    for table in session.schema.tables:
        rows = session.row_count(table)
        count = "unknown number of rows" if rows is None else f"{rows} row{'' if rows == 1 else 's'}"
        lines.append(f"{table.name} ({len(table.columns)} columns, {count})")
    return cut("\n".join(lines) if lines else "(no tables)", session.catalog_char_cap)


def describe_table(session: Session, table: str) -> str:
    found = session.table(table)
    _, values = schema_text.database_values(session.db_path)
    column_values = values[found.name].values if found.name in values else None
    # Wide tables (BIRD has ~100 columns) lose example values before they lose columns.
    for per_column in range(schema_text.DEFAULT_VALUES_PER_COLUMN, -1, -1):
        text = schema_text.render_table(found, column_values, values_per_column=per_column)
        if len(text) <= session.catalog_char_cap:
            break
    return cut(text, session.catalog_char_cap)


def sample_data(session: Session, table: str, limit: int = SAMPLE_LIMIT_DEFAULT) -> str:
    found = session.table(table)
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise ToolError(f"limit must be an integer, got {limit!r}") from None
    limit = max(1, min(limit, SAMPLE_LIMIT_MAX))
    try:
        result = session.execute(f"SELECT * FROM {sqlite_identifier(found.name)} LIMIT {limit}", row_cap=limit)
    except QueryError as error:
        raise ToolError(f"cannot read {found.name}: {error}") from None
    return cut(format_result(result), session.char_cap)
