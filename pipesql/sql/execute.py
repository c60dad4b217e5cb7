"""Run SQL on a benchmark's SQLite database: read-only, with a time limit and a row cap.

Every query pipesql runs (gold SQL, round-tripped pipe SQL, model output, agent tools) goes
through :func:`execute`, so a runaway query can never stall a batch or fill memory.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_ROW_CAP = 100_000
# How many SQLite VM instructions run between two checks of the clock.
_PROGRESS_INTERVAL = 10_000


class QueryError(Exception):
    """The database refused or failed the query."""


class QueryTimeout(QueryError):
    """The query ran past its time limit and was interrupted."""


class DatabaseError(Exception):
    """The database file is missing, unreadable or not a SQLite database."""


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool  # True when the row cap cut the result
    seconds: float


def quote_identifier(name: str) -> str:
    """A SQLite identifier, always double-quoted: table and column names come from files."""
    return '"' + name.replace('"', '""') + '"'


def _decode_text(raw: bytes) -> str:
    # Some Spider databases hold latin-1 bytes in TEXT columns.
    return raw.decode("utf-8", errors="replace")


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """Open a SQLite file read-only; raise :class:`DatabaseError` naming the file if that fails."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseError(f"database not found: {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        conn.text_factory = _decode_text
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as error:
        raise DatabaseError(f"cannot open database {path}: {error}") from None
    return conn


def execute(
    conn: sqlite3.Connection,
    sql: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
) -> QueryResult:
    """Execute one statement. Raises :class:`QueryTimeout` past ``timeout_s`` and
    :class:`QueryError` for anything the database rejects."""
    start = time.monotonic()
    deadline = start + timeout_s
    conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_INTERVAL)
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchmany(row_cap + 1)
        columns = tuple(d[0] for d in cursor.description or ())
        cursor.close()
    except sqlite3.OperationalError as error:
        if "interrupted" in str(error) and time.monotonic() > deadline:
            raise QueryTimeout(f"query exceeded {timeout_s:g} s") from None
        raise QueryError(str(error)) from None
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as error:
        raise QueryError(f"{type(error).__name__}: {error}") from None
    finally:
        conn.set_progress_handler(None, 0)
    truncated = len(rows) > row_cap
    return QueryResult(columns, tuple(rows[:row_cap]), truncated, time.monotonic() - start)
