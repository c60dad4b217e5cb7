"""ZetaSQL's WebAssembly module in this process: compiling and caching it, instantiating it
with a memory cap, calling its service with a deadline, and replacing an instance a trap has
left unusable. Nothing here knows SQL; :mod:`pipesql.sql.googlesql` builds the requests."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib.metadata
import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from pipesql.lru import LRU
from pipesql.sql.googlesql.errors import GoogleSQLError, GoogleSQLTimeout
from pipesql.storage.cache import cache_root
from pipesql.storage.files import atomic_open

ANALYZE_TIMEOUT_S = 20.0
_TICK_S = 0.01
_REGISTERED_CATALOGS = 16  # per process, least recently used dropped first
_ENGINE_SETTINGS = b"shared_memory;epoch_interruption;v1"


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


def new_engine():
    from wasmtime import Config, Engine

    config = Config()
    with contextlib.suppress(AttributeError):
        config.shared_memory = True
    config.epoch_interruption = True
    return Engine(config)


def load_module(engine):
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


class Client:
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


class Instance:
    """A client and the catalogs registered in it.

    A call stopped by a trap (its deadline, the memory cap) leaves C++ code interrupted midway
    (objects half built, the stack pointer not restored), so the instance is not called again:
    the client is replaced by a fresh one and its catalogs are forgotten; callers register what
    they need again when they next need it."""

    def __init__(self, start: Callable[[], Client]):
        self._start = start
        self.client = start()
        self.catalogs: LRU[Any, int] = LRU(_REGISTERED_CATALOGS, on_drop=self._unregister)

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

        known = self.catalogs.get(key)
        if known is not None:
            return known
        registered = self.call("RegisterCatalog", request_of(), pb.RegisterResponse, ANALYZE_TIMEOUT_S).registered_id
        self.catalogs.put(key, registered)
        return registered

    def _unregister(self, key: Any, registered_id: int) -> None:
        from zetasql.wasi._pb2.zetasql.local_service import local_service_pb2 as pb

        with contextlib.suppress(GoogleSQLError):
            self.call("UnregisterCatalog", pb.UnregisterRequest(registered_id=registered_id), empty_response(),
                      ANALYZE_TIMEOUT_S)


class EpochTicker:
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


def empty_response():
    from google.protobuf import empty_pb2

    return empty_pb2.Empty
