"""The database schema as the model reads it in a prompt.

One function, :func:`schema_text`, renders a SQLite database as compact DDL with a few real
example values per column. Training-data generation, the agent tools and evaluation all call it,
so the model sees the same schema text at training time and at inference::

    CREATE TABLE singer (
      Singer_ID INT PRIMARY KEY, -- 1, 2, 3
      Name TEXT, -- 'Joe Sharp', 'Timbaland', 'Justin Brown'
      Country_ID INT REFERENCES country(Country_ID) -- 4, 2
    );

Budget: BIRD tables reach ~100 columns and hold long texts, so values are truncated to
``value_chars`` and, when the whole text is longer than ``max_chars``, the number of example
values per column is lowered step by step (3, 2, 1, 0) until it fits. The table and column
skeleton itself is never cut: a schema too big for the budget is returned whole, without values.

Deterministic: example values are the first distinct non-NULL values among the first
``SCAN_ROWS`` rows of a column in storage order, which depends only on the file.
"""

from __future__ import annotations

import functools
import os
import stat
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from pipesql.sql.schema import DatabaseSchema, Table, schema_from_connection
from pipesql.sql.execute import DatabaseError, QueryError, connect_readonly, execute
from pipesql.sql.identifiers import googlesql_identifier, sqlite_identifier

DEFAULT_VALUES_PER_COLUMN = 3
DEFAULT_VALUE_CHARS = 40
# About 2,500 Qwen tokens of schema-like text: leaves room for the question, the query so far
# and the answer inside a 4,096-token training sequence.
DEFAULT_MAX_CHARS = 8_000
# Example values are looked for among this many rows, so a scan is bounded on any table size.
SCAN_ROWS = 1_000
_SAMPLE_TIMEOUT_S = 10.0

def _string_literal(text: str) -> str:
    # GoogleSQL has no '' escape: prefer double quotes when the text holds a single quote.
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def format_value(value: object, max_chars: int = DEFAULT_VALUE_CHARS) -> str:
    """One value as a SQL-looking literal, cut to ``max_chars`` characters (``…`` marks a cut)."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, int):
        text = str(value)
    else:
        text = str(value).replace("\n", " ").replace("\r", " ")
        if len(text) > max_chars:
            text = text[: max(1, max_chars - 1)] + "…"
        return _string_literal(text)
    return text if len(text) <= max_chars else text[: max(1, max_chars - 1)] + "…"


@dataclass(frozen=True)
class ColumnValues:
    """Example values of every column of one table: ``{column: (value, ...)}``."""

    table: str
    values: Mapping[str, tuple]


def sample_column_values(conn: sqlite3.Connection, table: Table, limit: int = DEFAULT_VALUES_PER_COLUMN) -> ColumnValues:
    """First ``limit`` distinct non-NULL values of each column among the first ``SCAN_ROWS`` rows."""
    values: dict[str, tuple] = {}
    if limit <= 0:
        return ColumnValues(table.name, values)
    for column in table.columns:
        name = sqlite_identifier(column.name)
        sql = (f"SELECT DISTINCT {name} FROM (SELECT {name} FROM {sqlite_identifier(table.name)} "
               f"WHERE {name} IS NOT NULL LIMIT {SCAN_ROWS}) LIMIT {limit}")
        try:
            result = execute(conn, sql, timeout_s=_SAMPLE_TIMEOUT_S, row_cap=limit)
        except QueryError:
            values[column.name] = ()
            continue
        values[column.name] = tuple(row[0] for row in result.rows)
    return ColumnValues(table.name, values)


def _foreign_key_targets(table: Table) -> dict[str, str]:
    targets: dict[str, str] = {}
    for key in table.foreign_keys:
        ref = googlesql_identifier(key.ref_table)
        targets.setdefault(key.column.lower(), f"{ref}({googlesql_identifier(key.ref_column)})" if key.ref_column else ref)
    return targets


def render_table(table: Table, values: Mapping[str, tuple] | None = None, *, values_per_column: int = DEFAULT_VALUES_PER_COLUMN,
                 value_chars: int = DEFAULT_VALUE_CHARS, columns: Sequence[str] | None = None) -> str:
    """``CREATE TABLE`` text for one table. ``columns`` (names, any case) keeps only those columns."""
    keep = None if columns is None else {c.lower() for c in columns}
    shown = [c for c in table.columns if keep is None or c.name.lower() in keep]
    primary = [c for c in table.columns if c.primary_key]
    inline_primary = len(primary) == 1
    targets = _foreign_key_targets(table)
    lines = []
    for index, column in enumerate(shown):
        parts = [googlesql_identifier(column.name)]
        if column.type:
            parts.append(column.type)
        if column.primary_key and inline_primary:
            parts.append("PRIMARY KEY")
        if column.name.lower() in targets:
            parts.append("REFERENCES " + targets[column.name.lower()])
        line = "  " + " ".join(parts)
        is_last = index == len(shown) - 1 and not (len(primary) > 1)
        line += "" if is_last else ","
        examples = (values or {}).get(column.name, ())[:values_per_column]
        if examples:
            line += " -- " + ", ".join(format_value(v, value_chars) for v in examples)
        lines.append(line)
    if len(primary) > 1:
        lines.append("  PRIMARY KEY (" + ", ".join(googlesql_identifier(c.name) for c in primary) + ")")
    return f"CREATE TABLE {googlesql_identifier(table.name)} (\n" + "\n".join(lines) + "\n);"


def render_schema(schema: DatabaseSchema, values: Mapping[str, ColumnValues] | None = None, *,
                  values_per_column: int = DEFAULT_VALUES_PER_COLUMN, value_chars: int = DEFAULT_VALUE_CHARS,
                  max_chars: int | None = DEFAULT_MAX_CHARS, only_columns: Mapping[str, Sequence[str]] | None = None) -> str:
    """The schema as text, lowering the number of example values until it fits ``max_chars``.

    ``only_columns`` (``{table: [column, ...]}``, any case) keeps only those tables and columns.
    """
    keep = None if only_columns is None else {t.lower(): list(cols) for t, cols in only_columns.items()}
    tables = [t for t in schema.tables if keep is None or t.name.lower() in keep]
    text = ""
    for per_column in range(values_per_column, -1, -1):
        text = "\n".join(
            render_table(t, (values or {}).get(t.name, ColumnValues(t.name, {})).values, values_per_column=per_column,
                         value_chars=value_chars, columns=None if keep is None else keep[t.name.lower()])
            for t in tables
        )
        if max_chars is None or len(text) <= max_chars:
            return text
    return text


def columns_used_by(sql: str, schema: DatabaseSchema, dialect: str = "sqlite") -> dict[str, list[str]]:
    """Tables a query reads and, for each, the columns it names plus its key columns.

    Column references are matched by name against every table the query reads (no scope
    resolution): a superset of what the query needs, never less. Raises ``ValueError`` when the
    query does not parse.
    """
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.ParseError as error:
        raise ValueError(f"cannot parse query: {error}") from None
    names = {t.name.lower() for t in tree.find_all(exp.Table)}
    referenced = {c.name.lower() for c in tree.find_all(exp.Column)}
    star = any(True for _ in tree.find_all(exp.Star))
    used: dict[str, list[str]] = {}
    for table in schema.tables:
        if table.name.lower() not in names:
            continue
        keys = {k.column.lower() for k in table.foreign_keys}
        used[table.name] = [
            c.name for c in table.columns
            if star or c.primary_key or c.name.lower() in keys or c.name.lower() in referenced
        ]
    return used


@functools.lru_cache(maxsize=64)
def _database_values(path: str, mtime_ns: int, values_per_column: int) -> tuple[DatabaseSchema, dict[str, ColumnValues]]:
    conn = connect_readonly(path)
    try:
        schema = schema_from_connection(conn)
        return schema, {t.name: sample_column_values(conn, t, values_per_column) for t in schema.tables}
    except sqlite3.DatabaseError as error:
        raise DatabaseError(f"cannot read schema of {path}: {error}") from None
    finally:
        conn.close()


@functools.lru_cache(maxsize=256)
def _rendered(path: str, mtime_ns: int, values_per_column: int, value_chars: int, max_chars: int | None) -> str:
    schema, values = _database_values(path, mtime_ns, values_per_column)
    return render_schema(schema, values, values_per_column=values_per_column, value_chars=value_chars, max_chars=max_chars)


def _cache_key(db_path: str | Path) -> tuple[str, int]:
    # abspath and one stat: Path.resolve() costs more than a cache hit saves (tools call this often).
    path = os.path.abspath(db_path)
    try:
        info = os.stat(path)
    except OSError:
        raise DatabaseError(f"database not found: {db_path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise DatabaseError(f"database not found: {db_path}")
    return path, info.st_mtime_ns


def database_values(db_path: str | Path, values_per_column: int = DEFAULT_VALUES_PER_COLUMN) -> tuple[DatabaseSchema, dict[str, ColumnValues]]:
    """The schema and example values of a database, read once per process (cached by path)."""
    return _database_values(*_cache_key(db_path), values_per_column)


def schema_text(db_path: str | Path, *, values_per_column: int = DEFAULT_VALUES_PER_COLUMN,
                value_chars: int = DEFAULT_VALUE_CHARS, max_chars: int | None = DEFAULT_MAX_CHARS,
                trim_to_query: str | None = None) -> str:
    """The schema text of the SQLite database at ``db_path`` for a prompt.

    By default the whole schema, as the model sees it at inference. ``trim_to_query`` (a SQLite
    query) keeps only the tables and columns that query uses (see :func:`columns_used_by`): an
    option for experiments, not what evaluation does. Cached per database file within a process.
    Raises :class:`pipesql.sql.execute.DatabaseError` when the file is missing or unreadable.
    """
    if trim_to_query is None:
        return _rendered(*_cache_key(db_path), values_per_column, value_chars, max_chars)
    schema, values = database_values(db_path, values_per_column)
    only = columns_used_by(trim_to_query, schema)
    return render_schema(schema, values, values_per_column=values_per_column, value_chars=value_chars,
                         max_chars=max_chars, only_columns=only)
