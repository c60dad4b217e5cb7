"""The sandbox every query pipesql runs goes through: read-only, query-only, bounded in time,
rows, bytes and value size, with no state that one call can leave for the next.

Gold SQL, round-tripped pipe SQL, model output, agent tool calls and HTTP clients' queries all
run through :func:`execute` on a connection from :func:`connect_readonly`. The layers, each
stopping what the one before could miss (docs/security.md has the attacks they answer):

1. :func:`require_query`: one SELECT (or set operation / VALUES / EXPLAIN of one) and nothing
   else, refused with :class:`QueryRefused` before SQLite sees it.
2. The connection: opened ``mode=ro``; ``SQLITE_LIMIT_ATTACHED = 0`` (no other file can be
   opened through it); ``SQLITE_LIMIT_LENGTH`` so a huge string or blob fails at once instead of
   being built; ``printf``/``format``/``trim`` replaced by bounded ones that also stop at the
   deadline inside a VM step (:func:`sandbox`; scratch databases get it too); and an
   authorizer, installed for the connection's whole life, that allows only reading: no
   ATTACH/DETACH, writes, transactions, TEMP objects, PRAGMAs that set anything, or
   file-touching functions. Nothing a query does survives it, so calls share no state.
3. :func:`execute`: a deadline enforced by a progress handler and, for work between VM steps,
   by ``interrupt()`` from a watchdog thread; rows streamed up to ``row_cap`` and ``max_bytes``,
   never fetched in full and then cut.

A limit no query beats, whatever it does inside one VM step, needs a process that can be
killed: :mod:`pipesql.sql.isolated` runs the same in a child killed at the deadline.
"""

from __future__ import annotations

import contextlib
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
from typing import Iterator

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


# What building a scratch database (a validation variant) may do beyond reading: run the
# original's CREATE TABLE / INDEX / VIEW and insert rows. No ATTACH, no triggers, no TEMP objects.
_BUILD_ACTIONS = frozenset({sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_VIEW,
                            sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_TRANSACTION})


def _scratch_authorizer(building: bool):
    """A scratch database's authorizer: while ``building``, reads plus :data:`_BUILD_ACTIONS`
    and ``PRAGMA query_only`` (to seal it); once sealed, reads plus ``PRAGMA
    reverse_unordered_selects`` (validation asks whether a result depends on scan order)."""
    pragmas = {"query_only"} if building else {"reverse_unordered_selects"}

    def authorize(action: int, arg1: str | None, arg2: str | None, db_name: str | None, trigger: str | None) -> int:
        if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in pragmas:
            return sqlite3.SQLITE_OK
        if building and action in _BUILD_ACTIONS:
            return sqlite3.SQLITE_OK
        return _authorize(action, arg1, arg2, db_name, trigger)

    return authorize


# A printf conversion: flags, width, precision (``*`` takes the next argument), type.
_PRINTF_CONVERSION = re.compile(r"%[-+ 0#,!]*(\*|\d*)(?:\.(\*|\d*))?([a-zA-Z%])")
# Most distinct characters a trim may remove: SQLite compares each character of the value with
# every one of the set inside one VM step (200,000 characters against a set of 20,001: 33.7 s).
MAX_TRIM_CHARACTERS = 256
_engines = threading.local()


class Clock:
    """The deadline of the query a connection runs, for the functions pipesql puts in SQLite's
    place (printf, format, trim): they stop a query past it, inside a step where the progress
    handler and ``interrupt()`` do not reach, so such calls back to back end at the deadline."""

    def __init__(self) -> None:
        self.deadline = float("inf")
        self.refusal: str | None = None  # why a bounded function last refused its arguments

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise sqlite3.OperationalError("interrupted")

    def refuse(self, why: str) -> None:
        self.refusal = why
        raise sqlite3.DataError(why)


class SandboxConnection(sqlite3.Connection):
    """A connection with a :class:`Clock` (held apart, so the functions need no reference to
    the connection)."""

    clock: Clock


def _engine(limit: int) -> sqlite3.Connection:
    """A private in-memory connection of this thread, for SQLite's own functions on values
    already checked."""
    engine = getattr(_engines, "conn", None)
    if engine is None:
        engine = _engines.conn = sqlite3.connect(":memory:")
    engine.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
    return engine


def _as_text(value: object, limit: int) -> object:
    """How SQLite reads a value as text (numbers as SQLite prints them, blobs as UTF-8)."""
    if isinstance(value, str) or value is None:
        return value
    return _engine(limit).execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0]


def _magnitude(value: object, limit: int) -> float:
    """The largest number SQLite could read from ``value`` as a width or precision: text such
    as ``'2000000000x'`` is read as its leading number."""
    if isinstance(value, (int, float)):
        return abs(value)
    if not isinstance(value, (str, bytes)):
        return 0
    as_int, as_real = _engine(limit).execute("SELECT CAST(? AS INTEGER), CAST(? AS REAL)", (value, value)).fetchone()
    return max(abs(as_int or 0), abs(as_real or 0.0))


def _bounded_printf(clock: Clock, limit: int):
    """SQLite's ``printf``/``format`` with every width and precision held to ``limit``.

    SQLite repeats a ``%c`` ``precision`` times one character at a time, inside one VM step and
    past the length limit: ``printf('%.*c', 9e8, 'x')`` ran 5 s per row, out of reach of the
    time limit. A BLOB format is read as the text SQLite would read, and a width given as text
    (``'2000000000x'``) as the number SQLite would read from it. The rest is SQLite's own
    printf, on a private in-memory connection."""

    def printf(format_text: object, *args: object) -> object:
        clock.check()
        if isinstance(format_text, bytes):
            format_text = _as_text(format_text, limit)
        if isinstance(format_text, str):
            remaining = iter(args)
            for match in _PRINTF_CONVERSION.finditer(format_text):
                width, precision, kind = match.groups()
                for size in (width, precision):
                    if size == "*":
                        size = next(remaining, 0)
                    if _magnitude(size or 0, limit) > limit:
                        clock.refuse(f"string or blob too big (a printf width or precision over {limit})")
                if kind != "%":
                    next(remaining, None)
        placeholders = ", ".join("?" * (len(args) + 1))
        return _engine(limit).execute(f"SELECT printf({placeholders})", (format_text, *args)).fetchone()[0]

    return printf


def _bounded_trim(clock: Clock, limit: int, name: str):
    """SQLite's ``trim``/``ltrim``/``rtrim`` with at most ``MAX_TRIM_CHARACTERS`` distinct
    characters to remove (the result depends only on which characters, not how often)."""

    def trim(value: object, characters: object = " ") -> object:
        clock.check()
        if value is None or characters is None:
            return None
        distinct = "".join(dict.fromkeys(str(_as_text(characters, limit))))
        if len(distinct) > MAX_TRIM_CHARACTERS:
            clock.refuse(f"{name} removes at most {MAX_TRIM_CHARACTERS} distinct characters, not {len(distinct)}")
        return _engine(limit).execute(f"SELECT {name}(?, ?)", (value, distinct)).fetchone()[0]

    return trim


# Functions pipesql puts in place of SQLite's own: name -> (number of arguments, maker).
_BOUNDED_FUNCTIONS = {
    "printf": ((-1,), _bounded_printf),
    "format": ((-1,), _bounded_printf),
    **{name: ((1, 2), lambda clock, limit, name=name: _bounded_trim(clock, limit, name)) for name in ("trim", "ltrim", "rtrim")},
}


def sandbox(conn: SandboxConnection, *, max_value_bytes: int = MAX_VALUE_BYTES) -> None:
    """Put the limits and bounded functions of the sandbox on ``conn`` (any
    :class:`SandboxConnection`, file or in-memory): no attached files, no value over
    ``max_value_bytes``, no SQL over ``MAX_SQL_CHARS`` characters. The authorizer is the
    caller's: :func:`connect_readonly` reads only, a scratch database also builds."""
    conn.clock = Clock()
    conn.text_factory = _decode_text
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 4 * MAX_SQL_CHARS)
    for name, (arities, make) in _BOUNDED_FUNCTIONS.items():
        for arity in arities:
            conn.create_function(name, arity, make(conn.clock, max_value_bytes), deterministic=True)


def connect_readonly(path: str | Path, *, max_value_bytes: int = MAX_VALUE_BYTES) -> sqlite3.Connection:
    """Open a SQLite file read-only and sandboxed (see the module docstring); raise
    :class:`DatabaseError` naming the file if that fails."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseError(f"database not found: {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                               factory=SandboxConnection)
    except sqlite3.Error as error:
        raise DatabaseError(f"cannot open database {path}: {error}") from None
    try:
        sandbox(conn, max_value_bytes=max_value_bytes)
        conn.execute("PRAGMA query_only = 1")
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()  # loads the schema
        conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
        conn.set_authorizer(_authorize)
    except sqlite3.DatabaseError as error:
        conn.close()
        raise DatabaseError(f"cannot open database {path}: {error}") from None
    return conn


def connect_scratch(*, max_value_bytes: int = MAX_VALUE_BYTES) -> SandboxConnection:
    """An in-memory database to build from a file's own DDL (validation's variants) under the
    sandbox's limits and bounded functions: CHECK constraints, defaults and expression indexes
    run as any query does. Build inside :func:`deadline`, then :func:`seal` it."""
    conn = sqlite3.connect(":memory:", check_same_thread=False, factory=SandboxConnection)
    sandbox(conn, max_value_bytes=max_value_bytes)
    conn.set_authorizer(_scratch_authorizer(building=True))
    return conn


def seal(conn: SandboxConnection) -> None:
    """Make a built scratch database read-only, as :func:`connect_readonly`'s are."""
    conn.commit()
    conn.execute("PRAGMA query_only = 1")
    conn.set_authorizer(_scratch_authorizer(building=False))


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


@contextlib.contextmanager
def deadline(conn: sqlite3.Connection, timeout_s: float) -> Iterator[float]:
    """Hold everything run on ``conn`` inside the block to ``timeout_s``: a progress handler
    between VM steps, the watchdog's ``interrupt()``, and the connection's :class:`Clock` for
    the bounded functions. Yields the deadline (``time.monotonic()`` seconds)."""
    end = time.monotonic() + timeout_s
    clock = getattr(conn, "clock", None)
    if clock is not None:
        clock.deadline, clock.refusal = end, None
    conn.set_progress_handler(lambda: time.monotonic() > end, _PROGRESS_INTERVAL)
    token = _watchdog.watch(conn, end)
    try:
        yield end
    finally:
        _watchdog.done(token)
        conn.set_progress_handler(None, 0)
        if clock is not None:
            clock.deadline = float("inf")


def execute(
    conn: sqlite3.Connection,
    sql: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> QueryResult:
    """Execute one read-only query on a :func:`connect_readonly` connection (or a
    :func:`pipesql.sql.isolated.connect_isolated` handle, which runs it in a child process).

    Raises :class:`QueryRefused` for anything but a query, :class:`QueryTimeout` past
    ``timeout_s``, and :class:`QueryError` for anything the database rejects or a result over
    ``max_bytes``. At most ``row_cap`` rows are fetched (``truncated`` says there were more).
    """
    require_query(sql)
    if not isinstance(conn, sqlite3.Connection):  # an isolated handle: the rest, in its child
        return conn.execute(sql, timeout_s=timeout_s, row_cap=row_cap, max_bytes=max_bytes)
    return run_query(conn, sql, timeout_s=timeout_s, row_cap=row_cap, max_bytes=max_bytes)


def run_query(conn: sqlite3.Connection, sql: str, *, timeout_s: float, row_cap: int, max_bytes: int) -> QueryResult:
    """:func:`execute` past the query-only gate, for text that already passed it (the isolated
    child runs what its parent gated; the authorizer still holds)."""
    start = time.monotonic()
    rows: list[tuple] = []
    cursor = None
    with deadline(conn, timeout_s) as end:
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
        except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as error:
            if time.monotonic() >= end and _stopped_by_clock(error):
                raise QueryTimeout(f"query exceeded {timeout_s:g} s") from None
            raise QueryError(_explain(error, conn)) from None
        finally:
            if cursor is not None:
                cursor.close()  # ends the statement (and its read transaction) however it stopped
    return QueryResult(columns, tuple(rows), truncated, time.monotonic() - start)


def _stopped_by_clock(error: BaseException) -> bool:
    # "interrupted": the progress handler or the watchdog; a bounded function past the deadline
    # reaches the caller as SQLite's "user-defined function raised exception".
    return isinstance(error, sqlite3.OperationalError) and (
        "interrupted" in str(error) or str(error) == "user-defined function raised exception")


def _explain(error: BaseException, conn: sqlite3.Connection) -> str:
    text = str(error)
    if text == "not authorized":
        return "not authorized: only reading the database is allowed"
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
    clock = getattr(conn, "clock", None)
    if text == "user-defined function raised exception" and clock is not None and clock.refusal:
        return clock.refusal  # only the bounded functions are ours
    if text == "string or blob too big":
        return f"string or blob too big (values are limited to {limit} bytes)"
    return text if isinstance(error, sqlite3.OperationalError) else f"{type(error).__name__}: {text}"
