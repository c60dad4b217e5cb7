"""GoogleSQL itself, offline: analyze and run pipe SQL with ZetaSQL (PyPI ``zetasql``).

``zetasql`` is Google's ZetaSQL local service compiled to WebAssembly and run in process by
wasmtime. This package wraps it for pipesql; here is the façade (:class:`GoogleSQL`, one per
process), and beside it :mod:`~pipesql.sql.googlesql.runtime` (the WebAssembly module: compile,
cache, instantiate, call under a deadline), :mod:`~pipesql.sql.googlesql.values` (SQLite values
to GoogleSQL types and back), :mod:`~pipesql.sql.googlesql.work` (predicting an execution that
cannot finish, from the query alone) and :mod:`~pipesql.sql.googlesql.errors`:

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
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipesql.sql.execute import DEFAULT_ROW_CAP
from pipesql.sql.googlesql.errors import (GoogleSQLAnalysisError, GoogleSQLError, GoogleSQLResult, GoogleSQLTimeout,
                                          GoogleSQLUnavailable, NotRepresentable)
from pipesql.sql.googlesql.runtime import (ANALYZE_TIMEOUT_S, Client, EpochTicker, Instance, compiled_module_path,
                                           empty_response, load_module, new_engine)
from pipesql.sql.googlesql.values import (MAX_EXECUTE_ROWS, TYPE_KINDS, catalog_types, coerce, decode_value,
                                          googlesql_type, load_database)
from pipesql.sql.googlesql.work import DEFAULT_MAX_WORK, predicted_work
from pipesql.sql.schema import DatabaseSchema

DEFAULT_TIMEOUT_S = 30.0


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
            self._engine = new_engine()
            self._module = load_module(self._engine)
            self._analysis = Instance(self._new_client)
        except Exception as error:
            raise GoogleSQLUnavailable(f"cannot start ZetaSQL: {type(error).__name__}: {error}") from error
        self._execution: Instance | None = None  # started by the first execution
        self.start_seconds = time.monotonic() - started
        self._ticker = EpochTicker(self._engine)
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

    def _new_client(self) -> Client:
        return Client(self._engine, self._module, self._memory_bytes)

    def _executor(self) -> Instance:
        # Executions are the calls that run past their deadline; in an instance of their own,
        # such a trap replaces that instance only, and the analysis catalogs stay registered.
        if self._execution is None:
            self._execution = Instance(self._new_client)
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
                kind = type_pb2.TypeKind.Value(TYPE_KINDS[type_name])
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
                                  empty_response(), ANALYZE_TIMEOUT_S)
        return None


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
    """Compile and cache the module now if it is not cached (call before starting workers). The
    compile runs in a child process: it takes about 1 GB, which the caller would otherwise keep
    as its own to the end (the main job goes on to train a model in the same process)."""
    path = compiled_module_path()
    if not path.is_file():
        code = "from pipesql.sql.googlesql import runtime; runtime.load_module(runtime.new_engine())"
        subprocess.run([sys.executable, "-c", code], check=True)
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
    "DEFAULT_MAX_WORK", "decode_value", "ensure_compiled", "execute", "googlesql_type", "instance", "load_database",
    "predicted_work",
]
