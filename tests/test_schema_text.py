"""The prompt schema text: content, value bounds, budget, trimming option, determinism, caching."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from pipesql.agent import schema_text as st
from pipesql.sql.schema import read_sqlite_schema
from pipesql.sql.execute import DatabaseError
from pipesql.sql.identifiers import googlesql_identifier

SPIDER = Path(os.environ.get("PIPESQL_SPIDER_DIR") or Path(__file__).resolve().parents[2] / "shared/data/spider")


def build_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE country (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE singer (
            singer_id INTEGER PRIMARY KEY, name TEXT, "home town" TEXT, bio TEXT, age INT, photo BLOB,
            country_id INTEGER REFERENCES country(id));
        CREATE TABLE performs (singer_id INT REFERENCES singer(singer_id), concert TEXT, year INT,
            PRIMARY KEY (singer_id, concert));
        CREATE TABLE empty_table (x REAL);
        """
    )
    conn.executemany("INSERT INTO country VALUES (?, ?)", [(1, "France"), (2, "Côte d'Ivoire"), (3, "Peru")])
    conn.executemany(
        "INSERT INTO singer VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(i, f"Singer {i}", None if i % 2 else "Paris", "x" * 500, 20 + i, b"\x00\x01", 1 + i % 3) for i in range(1, 9)],
    )
    conn.executemany("INSERT INTO performs VALUES (?, ?, ?)", [(1, "Gala", 2014), (1, "Fest", 2015), (2, "Gala", 2014)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return build_db(tmp_path / "music.sqlite")


def test_renders_tables_types_keys_and_real_values(db: Path) -> None:
    text = st.schema_text(db)
    assert "CREATE TABLE singer (" in text and "CREATE TABLE performs (" in text
    assert "  singer_id INTEGER PRIMARY KEY, -- 1, 2, 3" in text
    assert "country_id INTEGER REFERENCES country(id)" in text
    # composite key: one PRIMARY KEY line instead of a wrong inline one
    assert "  PRIMARY KEY (singer_id, concert)" in text
    assert "concert TEXT PRIMARY KEY" not in text
    # NULLs are skipped: the first non-NULL value of "home town" is Paris
    assert "`home town` TEXT, -- 'Paris'" in text
    # GoogleSQL quoting of a string holding a quote
    assert "\"Côte d'Ivoire\"" in text
    assert "<2 bytes>" in text
    # an empty table is still described, with no values
    assert "CREATE TABLE empty_table (\n  x REAL\n);" in text


def test_long_values_are_cut_and_samples_capped(db: Path) -> None:
    text = st.schema_text(db, values_per_column=2, value_chars=12)
    bio_line = next(line for line in text.splitlines() if line.strip().startswith("bio"))
    assert bio_line.endswith("'" + "x" * 11 + "…'")  # cut at 12 characters, one distinct value
    name_line = next(line for line in text.splitlines() if line.strip().startswith("name TEXT") and "Singer" in line)
    assert name_line.count("'Singer") == 2


def test_budget_drops_values_before_structure(db: Path) -> None:
    full = st.schema_text(db, max_chars=None)
    skeleton = st.schema_text(db, values_per_column=0, max_chars=None)
    assert "--" not in skeleton
    fitted = st.schema_text(db, max_chars=len(skeleton) + 40)
    assert len(skeleton) <= len(fitted) <= len(skeleton) + 40 < len(full)
    # a budget smaller than the skeleton still returns every table and column
    assert st.schema_text(db, max_chars=10) == skeleton


def test_trimming_is_an_option_and_keeps_keys(db: Path) -> None:
    whole = st.schema_text(db)
    trimmed = st.schema_text(db, trim_to_query="SELECT name FROM singer WHERE age > 30")
    assert "CREATE TABLE singer" in trimmed and "CREATE TABLE country" not in trimmed
    assert "age INT" in trimmed and "bio" not in trimmed
    assert "singer_id INTEGER PRIMARY KEY" in trimmed and "country_id" in trimmed  # keys stay
    assert st.schema_text(db) == whole  # the default is still the whole schema
    with pytest.raises(ValueError):
        st.schema_text(db, trim_to_query="SELEC nonsense FROM")


def test_deterministic_cached_and_read_only(db: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    first = st.schema_text(db)
    hits = st._rendered.cache_info().hits
    assert st.schema_text(db) == first
    assert st._rendered.cache_info().hits == hits + 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    copy = build_db(tmp_path / "copy.sqlite")  # a fresh file with the same content renders the same
    assert st.schema_text(copy) == first


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="nope.sqlite"):
        st.schema_text(tmp_path / "nope.sqlite")


def test_format_value_literals() -> None:
    assert st.format_value("it's") == '"it\'s"'
    assert st.format_value("plain") == "'plain'"
    assert st.format_value(3) == "3" and st.format_value(2.5) == "2.5" and st.format_value(None) == "NULL"
    assert st.format_value("a\nb") == "'a b'"
    assert googlesql_identifier("home town") == "`home town`" and googlesql_identifier("age") == "age"


def test_render_table_matches_schema(db: Path) -> None:
    schema = read_sqlite_schema(db)
    table = schema.table("performs")
    text = st.render_table(table)
    assert text.startswith("CREATE TABLE performs (") and text.endswith(");")
    assert [line.split()[0] for line in text.splitlines()[1:-2]] == ["singer_id", "concert", "year"]


@pytest.mark.spider
@pytest.mark.skipif(not (SPIDER / "database").is_dir(), reason="Spider databases not available")
def test_spider_schemas_fit_the_budget() -> None:
    lengths = {}
    for folder in sorted((SPIDER / "database").iterdir()):
        path = folder / f"{folder.name}.sqlite"
        if path.is_file():
            lengths[folder.name] = len(st.schema_text(path))
    assert len(lengths) > 100
    assert max(lengths.values()) <= st.DEFAULT_MAX_CHARS
