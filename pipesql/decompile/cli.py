"""``pipesql decompile``: standard SQL from ``--sql``, a file or stdin → pipe SQL on stdout.

Exit status 0 on success; 2 when the query cannot be decompiled (the reason goes to stderr).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pipesql.decompile import decompile
from pipesql.config.settings import option


@dataclass
class Settings:
    stage: ClassVar[str] = "decompile"

    sql: str | None = option(None, "The SQL query to decompile (else read from --input or stdin).")
    input: Path | None = option(None, "A file holding the SQL query ('-' for stdin).")
    db: Path | None = option(None, "A SQLite database whose schema types and qualifies the columns.")
    tables_json: Path | None = option(None, "A Spider/BIRD tables.json to take the schema from (with --db-id).")
    db_id: str | None = option(None, "The database id inside --tables-json.")
    dialect: str = option("sqlite", "sqlglot dialect of the input SQL.")
    json: bool = option(False, "Print a JSON object (pipe_sql, reason, operators) instead of the SQL.")


def _read_sql(settings: Settings) -> str:
    if settings.sql is not None:
        return settings.sql
    if settings.input is not None and str(settings.input) != "-":
        return Path(settings.input).read_text(encoding="utf-8")
    return sys.stdin.read()


def _schema(settings: Settings):
    if settings.db is not None:
        from pipesql.sql.schema import read_sqlite_schema

        return read_sqlite_schema(settings.db).sqlglot_mapping()
    if settings.tables_json is not None:
        from pipesql.sql.schema import read_spider_tables

        if not settings.db_id:
            raise SystemExit("--tables-json needs --db-id")
        schemas = read_spider_tables(settings.tables_json)
        if settings.db_id not in schemas:
            raise SystemExit(f"no database {settings.db_id!r} in {settings.tables_json}")
        return schemas[settings.db_id].sqlglot_mapping()
    return None


# A column the decompiler cannot place without knowing the tables' columns.
SCHEMA_HINT = ("without a schema, a column that is not written as table.column cannot be placed: "
               "pass the database (--db FILE.sqlite) or its tables.json (--tables-json FILE --db-id ID)")


def run(settings: Settings) -> int:
    schema = _schema(settings)
    result = decompile(_read_sql(settings), schema, settings.dialect)
    if settings.json:
        print(json.dumps({"pipe_sql": result.pipe_sql, "reason": result.reason, "operators": list(result.operators)}))
        return 0 if result.reason is None else 2
    if result.reason is not None:
        print(result.reason, file=sys.stderr)
        if schema is None and result.reason.startswith("unsupported:qualify"):
            print(f"hint: {SCHEMA_HINT}", file=sys.stderr)
        return 2
    print(result.pipe_sql)
    return 0
