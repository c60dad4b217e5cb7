"""GoogleSQL itself, offline: analyze and run pipe SQL with ZetaSQL (PyPI ``zetasql``).

``zetasql`` is Google's ZetaSQL local service compiled to WebAssembly and run in process by
wasmtime. This module wraps it for pipesql:

- :func:`analyze(pipe_sql, schema) <analyze>` → ``None`` when GoogleSQL accepts the query, else
  its error message (``"Unrecognized name: x [at 1:8]"``);
- :func:`execute(pipe_sql, db_path, row_cap) <execute>` → rows, computed by ZetaSQL's reference
  engine over the SQLite database's tables loaded into memory (small databases only).

**Language.** Every released language feature is on (pipe syntax needs that) and the product
mode is EXTERNAL, i.e. BigQuery's type names (FLOAT64, not DOUBLE).

**Types.** Each column is given the GoogleSQL type the decompiler assumes for it,
:func:`pipesql.sql.types.googlesql_type` (one mapping for both, so the decompiler's
casts line up): ``*INT*`` → INT64; ``CHAR``/``CLOB``/``TEXT``/``BLOB``/undeclared → STRING;
``REAL``/``FLOA``/``DOUB`` → FLOAT64; ``DATE``/``TIME``/``YEAR`` → STRING (the benchmarks keep
dates as ISO text, and GoogleSQL refuses to compare STRING with DATE); ``BOOL`` → INT64 (0/1);
any other NUMERIC spelling → FLOAT64.

**Loading rows.** A stored value is converted to its column's type only when nothing is lost:
``3.0`` into INT64, ``'12'`` into INT64, ``7`` into STRING (``'7'``), ``5`` into FLOAT64. A
value that cannot be (``'x204'`` in an INT64 column, ``''`` in a FLOAT64 one — Spider has
both) makes the database not executable here: :class:`NotRepresentable` names the column and
the value. Results are decoded to what SQLite would return: NUMERIC → float, DATE →
``'YYYY-MM-DD'``, DATETIME → ``'YYYY-MM-DD HH:MM:SS'``, BOOL → 0/1.

**Cost.** The first start on a machine compiles the 28 MB module (about 70 s, about 1 GB);
the compiled module is saved to ``<cache>/zetasql-<key>.cwasm`` (cache: ``$PIPESQL_CACHE`` or
``~/.cache/pipesql``; the key hashes the wasm file, the wasmtime version and the engine
settings) and later starts take about a second. A file lock makes parallel processes compile
once. Each process starts its own :class:`GoogleSQL` on first use (:func:`instance`), so worker
processes are safe; calls within a process are serialized by a lock.

**Limits.** Every call runs under a deadline (wasmtime epoch interruption, checked every
10 ms). A call past it traps, and a trapped instance of the module is never called again (the
C++ code stopped midway); analysis and executions therefore run in two instances of the module,
so that a runaway execution raises :class:`GoogleSQLTimeout` and replaces the execution instance
only: the analysis instance keeps its catalogs, and the database is registered in the new
execution instance when an execution next needs it. Memory is capped per instance
(``PIPESQL_GOOGLESQL_MEMORY_MB``, default 3072).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime as dt
import decimal
import fcntl
import hashlib
import importlib.metadata
import math
import os
import re
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import sqlglot
from sqlglot import exp

from pipesql.storage.cache import cache_root
from pipesql.storage.files import atomic_open
from pipesql.sql.schema import DatabaseSchema, schema_from_connection
from pipesql.sql.execute import DEFAULT_ROW_CAP, connect_readonly, quote_identifier

DEFAULT_TIMEOUT_S = 30.0
ANALYZE_TIMEOUT_S = 20.0
# Databases with more rows than this (all tables together) are not loaded for execution.
MAX_EXECUTE_ROWS = 50_000
_TICK_S = 0.01
_REGISTERED_CATALOGS = 16  # per process, least recently used dropped first
_ENGINE_SETTINGS = b"shared_memory;epoch_interruption;v1"

_TYPE_KINDS = {"INT64": "TYPE_INT64", "FLOAT64": "TYPE_DOUBLE", "STRING": "TYPE_STRING", "BOOL": "TYPE_BOOL",
               "DATE": "TYPE_DATE", "NUMERIC": "TYPE_NUMERIC"}
_INTEGER_TEXT = re.compile(r"\s*[-+]?\d+\s*")


class GoogleSQLError(Exception):
    """GoogleSQL refused or failed a query."""


class GoogleSQLAnalysisError(GoogleSQLError):
    """GoogleSQL does not accept the query (what :func:`analyze` reports)."""


class GoogleSQLTimeout(GoogleSQLError):
    """A call ran past its deadline and was interrupted."""


class GoogleSQLUnavailable(GoogleSQLError):
    """The ZetaSQL engine could not be started."""


class NotRepresentable(GoogleSQLError):
    """A stored value does not fit its column's GoogleSQL type, so the database cannot be loaded."""


@dataclass(frozen=True)
class GoogleSQLResult:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool


# --- types -------------------------------------------------------------------------------------

def googlesql_type(declared: str | None) -> str:
    """The GoogleSQL type of a column of this declared SQLite type (the decompiler's mapping)."""
    from pipesql.sql.types import googlesql_type as decompiler_mapping

    return decompiler_mapping(declared)


def catalog_types(schema: DatabaseSchema) -> dict[str, dict[str, str]]:
    """``{table: {column: GoogleSQL type}}`` for a schema."""
    return {t.name: {c.name: googlesql_type(c.type) for c in t.columns} for t in schema.tables}


def _sqlite_text(value: Any) -> str:
    # Close to SQLite's CAST(x AS TEXT): 1.0 stays '1.0' (exponents are spelled differently).
    return repr(value) if isinstance(value, float) else str(value)


def coerce(value: Any, type_name: str) -> Any:
    """A stored SQLite value as a value of ``type_name``; raises ValueError when that would lose it."""
    if value is None:
        return None
    if type_name == "STRING":
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8", errors="replace")
        return value if isinstance(value, str) else _sqlite_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise ValueError("a BLOB")
    if type_name in ("INT64", "BOOL"):
        if isinstance(value, int):
            result = int(value)
        elif isinstance(value, float) and value.is_integer():
            result = int(value)
        elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
            result = int(value)
        else:
            raise ValueError(f"{value!r} is not an integer")
        if not -(2**63) <= result < 2**63:
            raise ValueError(f"{value!r} does not fit INT64")
        return bool(result) if type_name == "BOOL" else result
    if type_name == "FLOAT64":
        if isinstance(value, (int, float)):
            return float(value)
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if math.isnan(number):
            raise ValueError(f"{value!r} is not a number")
        return number
    raise ValueError(f"unsupported column type {type_name}")


# --- the wasm module ------------------------------------------------------------------------------

def _wasm_path() -> Path:
    from zetasql.wasi import get_wasm_path

    return Path(get_wasm_path())


def compiled_module_path() -> Path:
    """Where the compiled module is cached for this zetasql, wasmtime and engine settings."""
    digest = hashlib.sha256()
    digest.update(_wasm_path().read_bytes())
    digest.update(importlib.metadata.version("wasmtime").encode())
    digest.update(_ENGINE_SETTINGS)
    return cache_root() / f"zetasql-{digest.hexdigest()[:12]}.cwasm"


def _new_engine():
    from wasmtime import Config, Engine

    config = Config()
    with contextlib.suppress(AttributeError):
        config.shared_memory = True
    config.epoch_interruption = True
    return Engine(config)


def _load_module(engine):
    """Deserialize the cached compiled module, compiling (once, under a file lock) if needed."""
    from wasmtime import Module, WasmtimeError

    path = compiled_module_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        with contextlib.suppress(WasmtimeError, OSError):
            return Module.deserialize_file(engine, str(path))
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():  # another process compiled it while we waited
            with contextlib.suppress(WasmtimeError, OSError):
                return Module.deserialize_file(engine, str(path))
        # Printed, not logged: the first validate otherwise sits silent for a minute.
        print(f"googlesql: compiling the ZetaSQL WebAssembly module into {path} (about a minute); "
              "once per machine", file=sys.stderr, flush=True)
        module = Module.from_file(engine, str(_wasm_path()))
        with atomic_open(path, "wb") as handle:
            handle.write(module.serialize())
        return module


_STATUS = re.compile(r"Code: (\d+), Message: (.+)")


def _zoneinfo_dir() -> str | None:
    """The tzdata package's zone files, which ZetaSQL reads as /usr/share/zoneinfo."""
    try:
        import tzdata
    except ImportError:
        return None
    path = Path(tzdata.__file__).parent / "zoneinfo"
    return str(path) if path.is_dir() else None


class _Client:
    """The module instantiated in a store of its own: serialized requests in, responses out.

    Written here rather than taken from ``zetasql.core``: importing that package loads every
    generated proto model (1.8 s in each worker process), and its client copies requests byte by
    byte."""

    def __init__(self, engine, module, memory_bytes: int):
        from wasmtime import Linker, Store, WasiConfig

        wasi = WasiConfig()
        wasi.inherit_stderr()
        if zoneinfo := _zoneinfo_dir():
            wasi.preopen_dir(zoneinfo, "/usr/share/zoneinfo")
        self.store = Store(engine)
        self.store.set_wasi(wasi)
        self.store.set_limits(memory_size=memory_bytes)
        self.store.set_epoch_deadline(int(ANALYZE_TIMEOUT_S / _TICK_S))  # for start-up; each call sets its own
        linker = Linker(engine)
        linker.define_wasi()
        self._exports = linker.instantiate(self.store, module).exports(self.store)
        with contextlib.suppress(KeyError):
            self._exports["_initialize"](self.store)
        self._memory = self._exports["memory"]
        self._malloc, self._free = self._exports["wasm_malloc"], self._exports["wasm_free"]
        self._size_slot = self._malloc(self.store, 4)  # where every call writes its response's size

    def call(self, method: str, request: bytes) -> bytes:
        """The service's response; :class:`GoogleSQLError` when it refuses the request. A trap
        (deadline, memory) propagates, and the instance must not be called again."""
        pointer = self._malloc(self.store, len(request))
        ctypes.memmove(self._base() + pointer, request, len(request))
        response = self._exports[method](self.store, pointer, len(request), self._size_slot)
        self._free(self.store, pointer)
        if response == 0:
            raise GoogleSQLError(self._last_error())
        size = int.from_bytes(self._read(self._size_slot, 4), "little")
        data = self._read(response, size)
        self._free(self.store, response)
        return data

    def _base(self) -> int:
        return ctypes.addressof(self._memory.data_ptr().contents)  # a shared memory: no store argument

    def _read(self, pointer: int, size: int) -> bytes:
        return ctypes.string_at(self._base() + pointer, size)

    def _last_error(self) -> str:
        size = self._exports["wasm_get_last_error_size"](self.store)
        text = self._read(self._exports["wasm_get_last_error"](self.store), size).decode() if size else ""
        status = _STATUS.match(text)  # "Code: 3, Message: Unrecognized name: x [at 1:8]"
        return (status.group(2) if status else text).strip()


class _Instance:
    """A client and the catalogs registered in it.

    A call stopped by a trap (its deadline, the memory cap) leaves C++ code interrupted midway
    (objects half built, the stack pointer not restored), so the instance is not called again:
    the client is replaced by a fresh one and its catalogs are forgotten; callers register what
    they need again when they next need it."""

    def __init__(self, start: Callable[[], _Client]):
        self._start = start
        self.client = start()
        self.catalogs: OrderedDict[Any, int] = OrderedDict()

    def call(self, method: str, request, response_type, timeout_s: float):
        from wasmtime import Trap, WasmtimeError

        self.client.store.set_epoch_deadline(max(1, int(timeout_s / _TICK_S)))
        try:
            response = self.client.call(f"ZetaSqlLocalService_{method}", request.SerializeToString())
        except (Trap, WasmtimeError) as error:
            self._restart()
            if "interrupt" in str(error).lower():
                raise GoogleSQLTimeout(f"GoogleSQL call exceeded {timeout_s:g} s") from None
            raise GoogleSQLError(f"engine trap: {str(error).splitlines()[0]}") from None
        return response_type.FromString(response)

    def _restart(self) -> None:
        with contextlib.suppress(Exception):
            self.client.store.close()  # its memory (up to the cap) is released now, not at some collection
        self.client = self._start()
        self.catalogs.clear()

    def register(self, key: Any, request_of: Callable[[], Any]) -> int:
        """The id of the catalog ``key`` names, registered from ``request_of()`` if it is not
        (the least recently used beyond :data:`_REGISTERED_CATALOGS` are unregistered)."""
        from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2 as pb

        if key in self.catalogs:
            self.catalogs.move_to_end(key)
            return self.catalogs[key]
        registered = self.call("RegisterCatalog", request_of(), pb.RegisterResponse, ANALYZE_TIMEOUT_S).registered_id
        self.catalogs[key] = registered
        while len(self.catalogs) > _REGISTERED_CATALOGS:
            _, old_id = self.catalogs.popitem(last=False)
            with contextlib.suppress(GoogleSQLError):
                self.call("UnregisterCatalog", pb.UnregisterRequest(registered_id=old_id), _empty(), ANALYZE_TIMEOUT_S)
        return registered


class _EpochTicker:
    """Advances an engine's epoch every tick, so a deadline of N ticks means N x 10 ms."""

    def __init__(self, engine):
        self._engine = engine
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zetasql-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(_TICK_S):
            self._engine.increment_epoch()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


# --- the per-process instance ---------------------------------------------------------------------

class GoogleSQL:
    """ZetaSQL in this process: analyzer options, deadlines, and two instances of the module,
    one for analysis and one for executions (see :meth:`execute`)."""

    def __init__(self) -> None:
        from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2
        from zetasql.wasi._pb2.zetasql.proto import options_pb2
        from zetasql.wasi._pb2.zetasql.public import options_pb2 as public_options_pb2

        self._pb = local_service_pb2
        self._lock = threading.RLock()
        self._memory_bytes = int(os.environ.get("PIPESQL_GOOGLESQL_MEMORY_MB", "3072")) << 20
        started = time.monotonic()
        try:
            self._engine = _new_engine()
            self._module = _load_module(self._engine)
            self._analysis = _Instance(self._new_client)
        except Exception as error:
            raise GoogleSQLUnavailable(f"cannot start ZetaSQL: {type(error).__name__}: {error}") from error
        self._execution: _Instance | None = None  # started by the first execution
        self.start_seconds = time.monotonic() - started
        self._ticker = _EpochTicker(self._engine)
        language = self._analysis.call("GetLanguageOptions", local_service_pb2.LanguageOptionsRequest(maximum_features=True),
                                       options_pb2.LanguageOptionsProto, ANALYZE_TIMEOUT_S)
        language.product_mode = public_options_pb2.PRODUCT_EXTERNAL
        self._language = language
        self._options = options_pb2.AnalyzerOptionsProto(
            language_options=language, error_message_mode=public_options_pb2.ERROR_MESSAGE_ONE_LINE)
        self._unloadable: dict[Any, str] = {}

    def close(self) -> None:
        """Release the instances while the interpreter is whole (wasmtime's finalizers fail when
        they run during interpreter shutdown)."""
        with self._lock:
            self._ticker.stop()
            stores = [i.client.store for i in (self._analysis, self._execution) if i is not None]
            for resource in (*stores, self._module, self._engine):
                with contextlib.suppress(Exception):
                    resource.close()

    def _new_client(self) -> _Client:
        return _Client(self._engine, self._module, self._memory_bytes)

    def _executor(self) -> _Instance:
        # Executions are the calls that run past their deadline; in an instance of their own,
        # such a trap replaces that instance only, and the analysis catalogs stay registered.
        if self._execution is None:
            self._execution = _Instance(self._new_client)
        return self._execution

    # catalogs

    def _catalog_request(self, schema: DatabaseSchema, contents: dict | None = None):
        from zetasql.wasi._pb2.zetasql.proto import simple_catalog_pb2
        from zetasql.wasi._pb2.zetasql.public import simple_table_pb2, type_pb2

        catalog = simple_catalog_pb2.SimpleCatalogProto(name="db")
        catalog.builtin_function_options.language_options.CopyFrom(self._language)
        for table_name, columns in catalog_types(schema).items():
            table = simple_table_pb2.SimpleTableProto(name=table_name)
            for column_name, type_name in columns.items():
                kind = type_pb2.TypeKind.Value(_TYPE_KINDS[type_name])
                table.column.add(name=column_name, type=type_pb2.TypeProto(type_kind=kind))
            catalog.table.append(table)
        request = self._pb.RegisterCatalogRequest(simple_catalog=catalog)
        for table_name, content in (contents or {}).items():
            request.table_content[table_name].CopyFrom(content)
        return request

    def _data_catalog(self, key: Any, path: Path) -> int:
        """The execution instance's catalog of the database's tables and rows (loaded when it is
        not registered there: first use, or after a trap replaced the instance)."""
        if key in self._unloadable:
            raise NotRepresentable(self._unloadable[key])

        def request():
            try:
                schema, contents = load_database(path, self._pb)
            except NotRepresentable as error:
                self._unloadable[key] = str(error)
                raise
            return self._catalog_request(schema, contents)

        return self._executor().register(key, request)

    # public operations

    def analyze(self, pipe_sql: str, schema: DatabaseSchema) -> str | None:
        """None when GoogleSQL accepts the query against ``schema``, else its error message."""
        with self._lock:
            catalog_id = self._analysis.register(("schema", schema), lambda: self._catalog_request(schema))
            request = self._pb.AnalyzeRequest(options=self._options, registered_catalog_id=catalog_id,
                                              sql_statement=pipe_sql)
            try:
                self._analysis.call("Analyze", request, self._pb.AnalyzeResponse, ANALYZE_TIMEOUT_S)
            except GoogleSQLError as error:  # a timeout too
                return str(error)
            return None

    def execute(self, pipe_sql: str, db_path: str | Path, row_cap: int = DEFAULT_ROW_CAP,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> GoogleSQLResult:
        """Run the query over the database's rows, in the execution instance: one call analyzes
        and evaluates it, under ``timeout_s`` for both. Raises :class:`GoogleSQLAnalysisError`
        (what :meth:`analyze` would return) when the query does not analyze,
        :class:`NotRepresentable` when the database cannot be loaded (remembered per file),
        :class:`GoogleSQLTimeout`, or :class:`GoogleSQLError` for a failure while running. A
        timeout replaces the execution instance only; the database is registered in the new one
        when an execution next needs it."""
        path = Path(db_path).resolve()
        stat = path.stat()
        key = ("data", str(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            request = self._pb.EvaluateQueryRequest(sql=pipe_sql, options=self._options,
                                                    registered_catalog_id=self._data_catalog(key, path))
            try:
                response = self._executor().call("EvaluateQuery", request, self._pb.EvaluateQueryResponse, timeout_s)
            except GoogleSQLError as failure:
                refusal = self._analysis_error(pipe_sql, key, path)
                if refusal is not None:
                    raise GoogleSQLAnalysisError(refusal) from None
                raise failure from None
        columns = tuple(c.name for c in response.prepared.columns)
        rows = [tuple(decode_value(cell) for cell in row.cell) for row in response.content.table_data.row]
        return GoogleSQLResult(columns, tuple(rows[:row_cap]), len(rows) > row_cap)

    def _analysis_error(self, pipe_sql: str, key: Any, path: Path) -> str | None:
        """PrepareQuery's error for the query (None: it analyzes). Asked only when an execution
        failed, to tell a query that does not analyze from one that failed while running."""
        request = self._pb.PrepareQueryRequest(sql=pipe_sql, options=self._options,
                                               registered_catalog_id=self._data_catalog(key, path))
        try:
            prepared = self._executor().call("PrepareQuery", request, self._pb.PrepareQueryResponse,
                                             ANALYZE_TIMEOUT_S).prepared
        except GoogleSQLError as error:  # a timeout here too: the analysis never finished
            return str(error)
        with contextlib.suppress(GoogleSQLError):
            self._executor().call("UnprepareQuery",
                                  self._pb.UnprepareQueryRequest(prepared_query_id=prepared.prepared_query_id),
                                  _empty(), ANALYZE_TIMEOUT_S)
        return None


# --- predicting executions that cannot finish --------------------------------------------------
# The reference engine joins by nested loops unless the ON has an equality, and evaluates a
# subquery in WHERE or SELECT again for every row. A timeout costs the time limit plus a new
# execution instance (which loads the database again); a query whose predicted row visits are
# above the bound is analyzed only. On Spider dev the 12 executions that
# ran past 2 s all predict more than 100 000 visits; of the 717 that finished, 2 do.
DEFAULT_MAX_WORK = 100_000


def _block_rows(select: exp.Select, table_rows: dict[str, int]) -> int:
    """Rows a SELECT's FROM and JOINs visit: an equality join adds its table, any other join
    (``ON a = x OR b = x``, a comma join) multiplies by it."""
    sources = [select.args.get("from_")] + list(select.args.get("joins") or [])
    rows = 0
    for position, source in enumerate(s for s in sources if s is not None):
        table = source.this
        size = table_rows.get(table.name.lower(), 1) if isinstance(table, exp.Table) else predicted_work_of(table, table_rows)
        on = source.args.get("on") if position else None
        hashed = on is not None and any(isinstance(c, exp.EQ) and isinstance(c.this, exp.Column)
                                        and isinstance(c.expression, exp.Column)
                                        for c in (on.flatten() if isinstance(on, exp.And) else [on]))
        rows = size if position == 0 else (rows + size if hashed else rows * max(size, 1))
    return max(rows, 1)


def predicted_work_of(tree: exp.Expr, table_rows: dict[str, int]) -> int:
    """Row visits the reference engine will make for ``tree`` (see :func:`predicted_work`)."""
    if isinstance(tree, exp.Subquery):
        return predicted_work_of(tree.this, table_rows)
    if isinstance(tree, exp.SetOperation):
        return predicted_work_of(tree.this, table_rows) + predicted_work_of(tree.expression, table_rows)
    if not isinstance(tree, exp.Select):
        return 1
    rows = _block_rows(tree, table_rows)
    work = rows
    for clause in ("where", "having", "expressions"):
        holders = tree.args.get(clause)
        for holder in (holders if isinstance(holders, list) else [holders]):
            if holder is None:
                continue
            for inner in holder.find_all(exp.Select):
                if inner.parent_select is tree:  # each subquery once, where it is nested directly
                    work += rows * predicted_work_of(inner, table_rows)
    return work


def predicted_work(sql: str, table_rows: dict[str, int], dialect: str = "sqlite") -> int:
    """Row visits the reference engine will make: FROM/JOIN rows per query block, times the
    work of every subquery in its WHERE, HAVING or SELECT list (evaluated per row).

    >>> predicted_work("SELECT a FROM t WHERE x < (SELECT AVG(x) FROM t)", {"t": 400})
    160400
    """
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # noqa: BLE001 - unparseable here: let the engine decide
        return 0
    lowered = {name.lower(): count for name, count in table_rows.items()}
    return predicted_work_of(tree, lowered)


def _empty():
    from google.protobuf import empty_pb2

    return empty_pb2.Empty


def load_database(path: Path, pb=None) -> tuple[DatabaseSchema, dict]:
    """The schema and every table's rows as ZetaSQL table contents, converted to the columns'
    GoogleSQL types. Raises :class:`NotRepresentable` (too many rows, or a value that does not
    fit its column)."""
    if pb is None:
        from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2 as pb
    conn = connect_readonly(path)
    try:
        schema = schema_from_connection(conn)
        total = 0
        for table in schema.tables:
            total += conn.execute(f"SELECT count(*) FROM {quote_identifier(table.name)}").fetchone()[0]
            if total > MAX_EXECUTE_ROWS:
                raise NotRepresentable(f"{path.name}: more than {MAX_EXECUTE_ROWS} rows")
        types = catalog_types(schema)
        contents = {}
        for table in schema.tables:
            column_types = [types[table.name][c.name] for c in table.columns]
            names = ", ".join(quote_identifier(c.name) for c in table.columns)
            content = pb.TableContent()
            content.table_data.SetInParent()  # an empty table must still say it has (no) rows
            for stored in conn.execute(f"SELECT {names} FROM {quote_identifier(table.name)}"):
                row = content.table_data.row.add()
                for column, type_name, value in zip(table.columns, column_types, stored):
                    try:
                        _set_cell(row.cell.add(), coerce(value, type_name), type_name)
                    except ValueError as error:
                        raise NotRepresentable(f"{table.name}.{column.name} ({type_name}): {error}") from None
            contents[table.name] = content
        return schema, contents
    except sqlite3.DatabaseError as error:
        raise GoogleSQLError(f"cannot read {path}: {error}") from None
    finally:
        conn.close()


def _set_cell(cell, value: Any, type_name: str) -> None:
    if value is None:
        return  # an empty ValueProto is NULL
    if type_name == "STRING":
        cell.string_value = value
    elif type_name == "INT64":
        cell.int64_value = value
    elif type_name == "FLOAT64":
        cell.double_value = value
    elif type_name == "BOOL":
        cell.bool_value = value


# --- decoding results -----------------------------------------------------------------------------

_EPOCH = dt.date(1970, 1, 1)


def _decode_numeric(raw: bytes, scale: int) -> float:
    # NUMERIC / BIGNUMERIC: little-endian two's complement integer, scaled by 10^9 / 10^38.
    return float(decimal.Decimal(int.from_bytes(raw, "little", signed=True)).scaleb(-scale))


def _decode_datetime(bits: int) -> str:
    second, minute, hour = bits & 0x3F, (bits >> 6) & 0x3F, (bits >> 12) & 0x1F
    day, month, year = (bits >> 17) & 0x1F, (bits >> 22) & 0xF, bits >> 26
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"


def decode_value(cell) -> Any:
    """A ZetaSQL ValueProto as the Python value SQLite would have returned."""
    kind = cell.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(cell, kind)
    if kind == "bool_value":
        return int(value)
    if kind == "numeric_value":
        return _decode_numeric(value, 9)
    if kind == "bignumeric_value":
        return _decode_numeric(value, 38)
    if kind == "date_value":
        return (_EPOCH + dt.timedelta(days=value)).isoformat()
    if kind == "datetime_value":
        return _decode_datetime(value.bit_field_datetime_seconds)
    if kind == "timestamp_value":
        moment = dt.datetime.fromtimestamp(value.seconds, tz=dt.timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if kind == "bytes_value":
        return bytes(value).decode("utf-8", errors="replace")
    if kind == "array_value":
        return tuple(decode_value(e) for e in value.element)
    if kind == "struct_value":
        return tuple(decode_value(f) for f in value.field)
    if kind in ("int32_value", "int64_value", "uint32_value", "uint64_value", "double_value", "float_value",
                "string_value"):
        return value
    return str(value)


# --- module-level API -------------------------------------------------------------------------------

_INSTANCE: GoogleSQL | None = None
_INSTANCE_PID: int | None = None
_INSTANCE_LOCK = threading.Lock()


@atexit.register
def _close_instance() -> None:
    global _INSTANCE
    if _INSTANCE is not None and _INSTANCE_PID == os.getpid():
        _INSTANCE.close()
    _INSTANCE = None


def instance() -> GoogleSQL:
    """This process's ZetaSQL instance, started on first use (a forked child starts its own)."""
    global _INSTANCE, _INSTANCE_PID
    with _INSTANCE_LOCK:
        if _INSTANCE is None or _INSTANCE_PID != os.getpid():
            _INSTANCE = GoogleSQL()
            _INSTANCE_PID = os.getpid()
        return _INSTANCE


def ensure_compiled() -> Path:
    """Compile and cache the module now if it is not cached (call before starting workers)."""
    path = compiled_module_path()
    if not path.is_file():
        _load_module(_new_engine())
    return path


def analyze(pipe_sql: str, schema: DatabaseSchema) -> str | None:
    """None when GoogleSQL accepts ``pipe_sql`` against ``schema``, else the error message."""
    return instance().analyze(pipe_sql, schema)


def execute(pipe_sql: str, db_path: str | Path, row_cap: int = DEFAULT_ROW_CAP,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> GoogleSQLResult:
    """Run ``pipe_sql`` with ZetaSQL over the (small) SQLite database at ``db_path``."""
    return instance().execute(pipe_sql, db_path, row_cap, timeout_s)


__all__ = [
    "GoogleSQL", "GoogleSQLAnalysisError", "GoogleSQLError", "GoogleSQLResult", "GoogleSQLTimeout", "GoogleSQLUnavailable",
    "MAX_EXECUTE_ROWS", "NotRepresentable", "analyze", "catalog_types", "coerce", "compiled_module_path",
    "decode_value", "ensure_compiled", "execute", "googlesql_type", "instance", "load_database",
]
