"""The three tools that show what the database holds: ``list_tables``, ``describe_table`` and
``sample_data``. Each takes the :class:`~pipesql.agent.tools.toolbox.Toolbox` bound to one
database and returns bounded text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipesql.agent import schema_text
from pipesql.agent.tools.output import cut, format_result
from pipesql.agent.tools.specs import SAMPLE_LIMIT_DEFAULT, SAMPLE_LIMIT_MAX, ToolError
from pipesql.sql.execute import QueryError
from pipesql.sql.identifiers import sqlite_identifier

if TYPE_CHECKING:
    from pipesql.agent.tools.toolbox import Toolbox


def list_tables(box: "Toolbox") -> str:
    lines = []
    for table in box.schema.tables:
        rows = box.row_count(table)
        count = "unknown number of rows" if rows is None else f"{rows} row{'' if rows == 1 else 's'}"
        lines.append(f"{table.name} ({len(table.columns)} columns, {count})")
    return cut("\n".join(lines) if lines else "(no tables)", box.char_cap)


def describe_table(box: "Toolbox", table: str) -> str:
    found = box.table(table)
    _, values = schema_text.database_values(box.db_path)
    column_values = values[found.name].values if found.name in values else None
    # Wide tables (BIRD has ~100 columns) lose example values before they lose columns.
    for per_column in range(schema_text.DEFAULT_VALUES_PER_COLUMN, -1, -1):
        text = schema_text.render_table(found, column_values, values_per_column=per_column)
        if len(text) <= box.char_cap:
            break
    return cut(text, box.char_cap)


def sample_data(box: "Toolbox", table: str, limit: int = SAMPLE_LIMIT_DEFAULT) -> str:
    found = box.table(table)
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise ToolError(f"limit must be an integer, got {limit!r}") from None
    limit = max(1, min(limit, SAMPLE_LIMIT_MAX))
    try:
        result = box.execute(f"SELECT * FROM {sqlite_identifier(found.name)} LIMIT {limit}", row_cap=limit)
    except QueryError as error:
        raise ToolError(f"cannot read {found.name}: {error}") from None
    return cut(format_result(result), box.char_cap)
