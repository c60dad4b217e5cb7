"""The sandbox every query pipesql runs goes through: read-only, query-only, bounded in time,
rows, bytes and value size, with no state that one call can leave for the next.

Gold SQL, round-tripped pipe SQL, model output, agent tool calls and HTTP clients' queries all
run through :func:`execute` on a connection from :func:`connect_readonly`. The layers, each
stopping what the one before could miss (docs/security.md has the attacks they answer):

1. :func:`require_query`: one SELECT (or set operation / VALUES / EXPLAIN of one) and nothing
   else, refused with :class:`QueryRefused` before SQLite sees it.
2. The connection: opened ``mode=ro``; ``SQLITE_LIMIT_ATTACHED = 0`` (no other file can be
   opened through it); ``SQLITE_LIMIT_LENGTH`` so a huge string or blob fails at once instead of
   being built; and an authorizer, installed for the connection's whole life, that allows only
   reading: no ATTACH/DETACH, writes, transactions, TEMP objects, PRAGMAs that set anything, or
   file-touching functions. Nothing a query does survives it, so calls share no state.
3. :func:`execute`: a deadline enforced by a progress handler and, for work between VM steps,
   by ``interrupt()`` from a watchdog thread; rows streamed up to ``row_cap`` and ``max_bytes``,
   never fetched in full and then cut.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_ROW_CAP = 100_000
# Largest string or blob a query may build or read (SQLITE_LIMIT_LENGTH). Benchmark values are
# far smaller; zeroblob(1e9) or printf('%.*c', 9e8, 'x') fail in microseconds instead of
# running for minutes inside one VM step. It also bounds the functions whose time grows with
# the product of two lengths inside one step (instr, replace, LIKE): 2.4 s at this size, and
# four times the size would take sixteen times as long.
MAX_VALUE_BYTES = 256 << 10
# Most result columns (SQLITE_LIMIT_COLUMN, set once the schema is loaded; BIRD's widest table
# has 115): with the value limit it bounds one row, the unit SQLite hands over at once.
MAX_COLUMNS = 250
# Most bytes of one result, counted while rows stream in.
DEFAULT_MAX_BYTES = 256 << 20
# Longest SQL text a query may have (SQLITE_LIMIT_SQL_LENGTH, and checked before parsing).
MAX_SQL_CHARS = 100_000
# How many SQLite VM instructions run between two checks of the clock.
_PROGRESS_INTERVAL = 10_000


class QueryError(Exception):
    """The database refused or failed the query."""


class QueryTimeout(QueryError):
    """The query ran past its time limit and was interrupted."""


class QueryRefused(QueryError):
    """The text is not one read-only query; refused before SQLite saw it."""


class DatabaseError(Exception):
    """The database file is missing, unreadable or not a SQLite database."""


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool  # True when the row cap cut the result
    seconds: float


def _decode_text(raw: bytes) -> str:
    # Some Spider databases hold latin-1 bytes in TEXT columns.
    return raw.decode("utf-8", errors="replace")


# --- 1. the query-only gate ---------------------------------------------------------------------

def require_query(sql: str) -> None:
    """Raise :class:`QueryRefused` unless ``sql`` is one read-only query.

    sqlglot parses it as SQLite: exactly one statement, a SELECT, set operation or VALUES
    (``EXPLAIN`` of one is allowed: it compiles without running). Text sqlglot cannot parse is
    left to SQLite, whose parser gets the final word and whose authorizer stops anything that
    is not a read.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRefused("empty query")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"query longer than {MAX_SQL_CHARS} characters")
    refusal = _refusal(sql)
    if refusal is not None:
        raise QueryRefused(refusal)


@functools.lru_cache(maxsize=4096)
def _refusal(sql: str) -> str | None:
    """Why sqlglot's parse of ``sql`` is not one read-only query (None: it is, or sqlglot cannot
    parse it). Remembered per text: validation runs each query on many database variants, and
    parsing it again each time cost more than running it."""
    import sqlglot
    from sqlglot import exp

    body = sql.lstrip()
    if body[:8].upper() == "EXPLAIN " and body[8:].lstrip()[:5].upper() != "QUERY":
        body = body[8:]
    try:
        trees = [t for t in sqlglot.parse(body, read="sqlite") if t is not None]
    except Exception:  # sqlglot's parser is stricter than SQLite's in places
        return None
    if len(trees) != 1:
        return f"expected one query, got {len(trees)} statements"
    tree = trees[0]
    if not isinstance(tree, (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)):
        return f"only read-only queries may run, not {tree.key.upper()}"
    nested = next(tree.find_all(exp.Command, exp.Pragma, exp.Attach, exp.Detach, exp.DML, exp.Create, exp.Drop), None)
    if nested is not None:
        return f"only read-only queries may run; found {nested.key.upper()}"
    return None


# --- 2. the connection --------------------------------------------------------------------------

_READ_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE})
# PRAGMAs that only report the schema (pipesql.sql.schema reads tables through them).
_SCHEMA_PRAGMAS = frozenset({"table_info", "table_xinfo", "foreign_key_list", "index_list", "index_info"})
# Functions that reach outside the database (the last three exist only in some builds).
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"})


def _authorize(action: int, arg1: str | None, arg2: str | None, db_name: str | None, trigger: str | None) -> int:
    """SQLite's authorizer: reads only. Runs while a statement is prepared, so a denied
    statement never executes."""
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        return sqlite3.SQLITE_OK if (arg1 or "").lower() in _SCHEMA_PRAGMAS and arg2 is not None else sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK if action in _READ_ACTIONS else sqlite3.SQLITE_DENY


# A printf conversion: flags, width, precision (``*`` takes the next argument), type.
_PRINTF_CONVERSION = re.compile(r"%[-+ 0#,!]*(\*|\d*)(?:\.(\*|\d*))?([a-zA-Z%])")
_printf_engines = threading.local()


def _bounded_printf(limit: int):
    """SQLite's ``printf``/``format`` with every width and precision held to ``limit``.

    SQLite repeats a ``%c`` ``precision`` times one character at a time, inside one VM step and
    past the length limit: ``printf('%.*c', 9e8, 'x')`` ran 5 s per row, out of reach of the
    time limit. Anything else is SQLite's own printf, on a private in-memory connection."""

    def printf(format_text: object, *args: object) -> object:
        if isinstance(format_text, str):
            remaining = iter(args)
            for match in _PRINTF_CONVERSION.finditer(format_text):
                width, precision, kind = match.groups()
                for size in (width, precision):
                    if size == "*":
                        size = next(remaining, 0)
                    try:
                        too_big = abs(int(size or 0)) > limit
                    except (TypeError, ValueError, OverflowError):
                        too_big = False
                    if too_big:
                        raise sqlite3.DataError(f"printf width or precision over {limit}")
                if kind != "%":
                    next(remaining, None)
        return _sqlite_printf(format_text, args, limit)

    return printf


def _sqlite_printf(format_text: object, args: tuple, limit: int) -> object:
    engine = getattr(_printf_engines, "conn", None)
    if engine is None:
        engine = _printf_engines.conn = sqlite3.connect(":memory:")
    engine.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
    placeholders = ", ".join("?" * (len(args) + 1))
    return engine.execute(f"SELECT printf({placeholders})", (format_text, *args)).fetchone()[0]


def connect_readonly(path: str | Path, *, max_value_bytes: int = MAX_VALUE_BYTES) -> sqlite3.Connection:
    """Open a SQLite file read-only and sandboxed (see the module docstring); raise
    :class:`DatabaseError` naming the file if that fails."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseError(f"database not found: {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error as error:
        raise DatabaseError(f"cannot open database {path}: {error}") from None
    try:
        conn.text_factory = _decode_text
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * MAX_SQL_CHARS)
        conn.execute("PRAGMA query_only = 1")
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()  # loads the schema
        conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
        for name in ("printf", "format"):
            conn.create_function(name, -1, _bounded_printf(max_value_bytes), deterministic=True)
        conn.set_authorizer(_authorize)
    except sqlite3.DatabaseError as error:
        conn.close()
        raise DatabaseError(f"cannot open database {path}: {error}") from None
    return conn


# --- 3. execution ---------------------------------------------------------------------------------

class _Watchdog:
    """One thread that calls ``conn.interrupt()`` on queries past their deadline, for work the
    progress handler (called between VM instructions) does not see. Started lazily per
    process, so worker processes get their own."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._deadlines: list[tuple[float, int, sqlite3.Connection]] = []
        self._active: set[int] = set()
        self._ids = itertools.count()
        self._pid = -1

    def watch(self, conn: sqlite3.Connection, deadline: float) -> int:
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (or after a fork)
                self._pid = os.getpid()
                self._deadlines.clear()
                self._active.clear()
                threading.Thread(target=self._run, name="pipesql-sql-watchdog", daemon=True).start()
            token = next(self._ids)
            self._active.add(token)
            heapq.heappush(self._deadlines, (deadline, token, conn))
            if self._deadlines[0][1] == token:  # earlier than what the thread sleeps until
                self._lock.notify()
            return token

    def done(self, token: int) -> None:
        with self._lock:
            self._active.discard(token)

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._deadlines and self._deadlines[0][1] not in self._active:
                    heapq.heappop(self._deadlines)
                if not self._deadlines:
                    self._lock.wait()
                    continue
                deadline, token, conn = self._deadlines[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                heapq.heappop(self._deadlines)
                self._active.discard(token)
                # Still under the lock: done() for this token cannot have returned, so the
                # connection is still running this query, not the caller's next one.
                conn.interrupt()


_watchdog = _Watchdog()


def _row_bytes(row: tuple) -> int:
    return sum(len(value) if isinstance(value, (str, bytes)) else 8 for value in row)


def execute(
    conn: sqlite3.Connection,
    sql: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> QueryResult:
    """Execute one read-only query on a :func:`connect_readonly` connection.

    Raises :class:`QueryRefused` for anything but a query, :class:`QueryTimeout` past
    ``timeout_s``, and :class:`QueryError` for anything the database rejects or a result over
    ``max_bytes``. At most ``row_cap`` rows are fetched (``truncated`` says there were more).
    """
    require_query(sql)
    start = time.monotonic()
    deadline = start + timeout_s
    conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_INTERVAL)
    token = _watchdog.watch(conn, deadline)
    rows: list[tuple] = []
    cursor = None
    try:
        cursor = conn.execute(sql)
        columns = tuple(d[0] for d in cursor.description or ())
        size, truncated = 0, False
        for row in cursor:  # streamed: rows past the cap are never fetched
            if len(rows) == row_cap:
                truncated = True
                break
            size += _row_bytes(row)
            if size > max_bytes:
                raise QueryError(f"result larger than {max_bytes} bytes (after {len(rows)} rows)")
            rows.append(row)
    except sqlite3.OperationalError as error:
        if "interrupted" in str(error) and time.monotonic() >= deadline:
            raise QueryTimeout(f"query exceeded {timeout_s:g} s") from None
        raise QueryError(_explain(error, conn)) from None
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as error:
        raise QueryError(_explain(error, conn)) from None
    finally:
        if cursor is not None:
            cursor.close()  # ends the statement (and its read transaction) however it stopped
        _watchdog.done(token)
        conn.set_progress_handler(None, 0)
    return QueryResult(columns, tuple(rows), truncated, time.monotonic() - start)


def _explain(error: BaseException, conn: sqlite3.Connection) -> str:
    text = str(error)
    if text == "not authorized":
        return "not authorized: only reading the database is allowed"
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    if text == "user-defined function raised exception":  # only printf/format are ours
        return f"string or blob too big (a printf width or precision over {limit})"
    if text == "string or blob too big":
        return f"string or blob too big (values are limited to {limit} bytes)"
    return text if isinstance(error, sqlite3.OperationalError) else f"{type(error).__name__}: {text}"
