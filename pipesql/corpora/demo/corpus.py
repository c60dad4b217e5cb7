"""Write the demo corpus in Spider's layout into an empty folder.

::

    database/<db_id>/<db_id>.sqlite
    dev.json            [{"db_id", "question", "query", "difficulty"}, ...]
    train_spider.json   the same, for the train databases
    tables.json         Spider's schema description of every database
"""

from __future__ import annotations

import json
import random
import sqlite3
import zlib
from pathlib import Path

from pipesql.corpora.demo.databases import DATABASES
from pipesql.corpora.demo.questions import QUESTIONS
from pipesql.corpora.difficulty import spider_hardness
from pipesql.sql.schema import DatabaseSchema, schema_from_connection

SPLIT_FILES = {"dev": "dev.json", "train": "train_spider.json"}
_SPIDER_KIND = (("INT", "number"), ("REAL", "number"), ("NUMERIC", "number"), ("BOOL", "boolean"),
                ("DATE", "time"), ("TIME", "time"), ("TEXT", "text"), ("CHAR", "text"))


def seed_of(db_id: str) -> int:
    """Each database's seed: stable across runs and machines (unlike ``hash``)."""
    return zlib.crc32(f"pipesql-demo:{db_id}".encode())


def build_database(path: Path, db_id: str) -> None:
    builder, _ = DATABASES[db_id]
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA foreign_keys = ON")  # the seeded data must honour its own keys
        with conn:
            builder(conn, random.Random(seed_of(db_id)))
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            raise RuntimeError(f"demo database {db_id}: foreign key violations {violations[:3]}")
    finally:
        conn.close()


def _spider_kind(declared: str) -> str:
    return next((kind for marker, kind in _SPIDER_KIND if marker in declared.upper()), "others")


def _natural(name: str) -> str:
    return name.replace("_", " ").lower()


def spider_tables_entry(db_id: str, schema: DatabaseSchema) -> dict:
    """One database's entry in Spider's ``tables.json``."""
    column_names = [[-1, "*"]]
    column_types = ["text"]
    index: dict[tuple[str, str], int] = {}
    primary_keys: list = []
    for table_index, table in enumerate(schema.tables):
        keys = []
        for column in table.columns:
            index[(table.name.lower(), column.name.lower())] = len(column_names)
            if column.primary_key:
                keys.append(len(column_names))
            column_names.append([table_index, column.name])
            column_types.append(_spider_kind(column.type))
        if keys:
            primary_keys.append(keys[0] if len(keys) == 1 else keys)
    foreign_keys = [
        [index[(table.name.lower(), fk.column.lower())], index[(fk.ref_table.lower(), fk.ref_column.lower())]]
        for table in schema.tables for fk in table.foreign_keys
    ]
    return {
        "db_id": db_id,
        "table_names_original": [t.name for t in schema.tables],
        "table_names": [_natural(t.name) for t in schema.tables],
        "column_names_original": column_names,
        "column_names": [[t, _natural(n) if t >= 0 else n] for t, n in column_names],
        "column_types": column_types,
        "primary_keys": primary_keys,
        "foreign_keys": foreign_keys,
    }


def _dump(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_corpus(root: Path) -> None:
    """Write every database, the two question files and ``tables.json`` under ``root``."""
    tables = []
    splits: dict[str, list[dict]] = {split: [] for split in SPLIT_FILES}
    for db_id, (_, split) in DATABASES.items():
        path = root / "database" / db_id / f"{db_id}.sqlite"
        build_database(path, db_id)
        conn = sqlite3.connect(path)
        try:
            tables.append(spider_tables_entry(db_id, schema_from_connection(conn)))
        finally:
            conn.close()
        for question, query in QUESTIONS[db_id]:
            splits[split].append({"db_id": db_id, "question": question, "query": query,
                                  "difficulty": spider_hardness(query)})
    for split, filename in SPLIT_FILES.items():
        _dump(root / filename, splits[split])
    _dump(root / "tables.json", tables)
