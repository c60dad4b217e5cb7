"""The HTTP server: uvicorn serving the guarded app on a socket bound up front, with a read
deadline per request that uvicorn itself does not have."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pipesql.models.backends import Backend
from pipesql.serve.app import create_app, guarded
from pipesql.serve.guard import LOOPBACK_HOSTS
from pipesql.serve.batching import BatchQueue
from pipesql.serve.tools import ToolService

log = logging.getLogger(__name__)


class BoundedReadProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on reading each request.

    uvicorn times out idle kept-alive connections, but waits forever on one that sends half a
    request: 40 such connections held their sockets until the process ran out of files. Here a
    request must arrive whole within ``read_timeout_s`` of its first byte (or of the
    connection opening), or the connection is closed."""

    read_timeout_s: float = 10.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: Any = None
        self._arm()

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def data_received(self, data: bytes) -> None:
        self._arm()
        super().data_received(data)
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()  # the whole request is in (or the connection is over)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # an idle kept-alive connection is uvicorn's keep-alive timeout's

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing() and self.conn.their_state is not h11.DONE:
            log.info("closing a connection that did not send a whole request in %g s", self.read_timeout_s)
            self.transport.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_binding(settings: Any) -> None:
    """A bind beyond loopback needs an explicit flag and an API key: raise SystemExit otherwise."""
    if settings.host in LOOPBACK_HOSTS:
        return
    if not settings.allow_remote:
        raise SystemExit(f"pipesql serve: --host {settings.host} exposes the server beyond this machine; "
                         "add --allow-remote (and --api-key) to mean it")
    if not settings.api_key:
        raise SystemExit("pipesql serve: a non-loopback bind requires --api-key (or PIPESQL_SERVE_API_KEY)")


class Server:
    """A bound, not yet serving server: :meth:`serve_forever` (blocking) or
    :func:`start_in_thread`; :meth:`shutdown` then :meth:`server_close` to stop."""

    def __init__(self, settings: Any, backend: Backend | None):
        check_binding(settings)
        self.settings = settings
        self.backend = backend
        self.batches = (BatchQueue(backend, max_batch=settings.max_batch, wait_s=settings.batch_wait_ms / 1000)
                        if backend is not None else None)
        self.tools = ToolService(settings.db_dir, timeout_s=settings.tool_timeout_s, row_cap=settings.tool_row_cap)
        self.app = create_app(settings, backend, self.batches, self.tools)
        protocol = type("Protocol", (BoundedReadProtocol,), {"read_timeout_s": settings.read_timeout_s})
        config = uvicorn.Config(guarded(self.app, settings), http=protocol, lifespan="off", access_log=False,
                                log_level="warning", timeout_keep_alive=5, limit_concurrency=settings.max_connections,
                                h11_max_incomplete_event_size=64 * 1024)
        self._uvicorn = uvicorn.Server(config)
        self.socket = bind(settings.host, settings.port)
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def server_address(self) -> tuple[str, int]:
        return self.socket.getsockname()[:2]

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    @property
    def started(self) -> bool:
        return self._uvicorn.started

    def shutdown(self) -> None:
        self._uvicorn.should_exit = True

    def server_close(self) -> None:
        self.shutdown()
        self._stopped.wait(timeout=30)  # uvicorn closes connections and the socket's listener first
        if self.batches is not None:
            self.batches.close()
        self.tools.close()
        self.socket.close()


def start_in_thread(server: Server, timeout_s: float = 30.0) -> threading.Thread:
    """Serve in a daemon thread; returns once the server accepts connections."""
    thread = threading.Thread(target=server.serve_forever, name="pipesql-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    return thread
