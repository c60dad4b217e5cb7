"""A database's schema as pipesql sees it: tables, typed columns, primary and foreign keys.

Read from the SQLite file itself (the truth the queries run against) or from a Spider-style
``tables.json``. The decompiler uses it to qualify and type columns; the training-data
generator and the agent tools render it for the model.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from pipesql.sql.execute import DatabaseError, connect_readonly
from pipesql.sql.identifiers import sqlite_identifier


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the declared SQLite type, upper-cased ("" when undeclared)
    primary_key: bool = False


@dataclass(frozen=True)
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


@dataclass(frozen=True)
class DatabaseSchema:
    tables: tuple[Table, ...]

    def table(self, name: str) -> Table | None:
        lowered = name.lower()
        return next((t for t in self.tables if t.name.lower() == lowered), None)

    def sqlglot_mapping(self) -> dict[str, dict[str, str]]:
        """``{table: {column: type}}``, the form sqlglot's ``MappingSchema`` takes."""
        return {t.name: {c.name: c.type or "TEXT" for c in t.columns} for t in self.tables}


def schema_from_connection(conn: sqlite3.Connection) -> DatabaseSchema:
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    )]
    tables = []
    for name in names:
        columns = tuple(
            Column(name=row[1], type=(row[2] or "").upper(), primary_key=bool(row[5]))
            for row in conn.execute(f"PRAGMA table_info({sqlite_identifier(name)})")
        )
        foreign_keys = tuple(
            ForeignKey(column=row[3], ref_table=row[2], ref_column=row[4] or "")
            for row in conn.execute(f"PRAGMA foreign_key_list({sqlite_identifier(name)})")
        )
        tables.append(Table(name, columns, foreign_keys))
    return DatabaseSchema(tuple(tables))


def read_sqlite_schema(path: str | Path) -> DatabaseSchema:
    conn = connect_readonly(path)
    try:
        return schema_from_connection(conn)
    except sqlite3.DatabaseError as error:
        raise DatabaseError(f"cannot read schema of {path}: {error}") from None
    finally:
        conn.close()


_SPIDER_TYPES = {"text": "TEXT", "number": "NUMERIC", "time": "DATETIME", "boolean": "BOOLEAN", "others": ""}


def read_spider_tables(path: str | Path) -> dict[str, DatabaseSchema]:
    """Schemas of every database in a Spider/BIRD ``tables.json``, keyed by ``db_id``."""
    schemas = {}
    for entry in json.loads(Path(path).read_text(encoding="utf-8")):
        table_names = entry["table_names_original"]
        primary = set()
        for key in entry.get("primary_keys", []):
            primary.update(key if isinstance(key, list) else [key])
        columns: dict[int, list[Column]] = {i: [] for i in range(len(table_names))}
        index_to_column = {}
        for index, ((table_index, name), kind) in enumerate(zip(entry["column_names_original"], entry["column_types"])):
            if table_index < 0:
                continue
            column = Column(name, _SPIDER_TYPES.get(kind, kind.upper()), index in primary)
            columns[table_index].append(column)
            index_to_column[index] = (table_index, name)
        foreign: dict[int, list[ForeignKey]] = {i: [] for i in range(len(table_names))}
        for source, target in entry.get("foreign_keys", []):
            (source_table, source_name), (target_table, target_name) = index_to_column[source], index_to_column[target]
            foreign[source_table].append(ForeignKey(source_name, table_names[target_table], target_name))
        schemas[entry["db_id"]] = DatabaseSchema(tuple(
            Table(name, tuple(columns[i]), tuple(foreign[i])) for i, name in enumerate(table_names)
        ))
    return schemas
