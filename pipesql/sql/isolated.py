"""Queries run in a child process that is killed at the deadline: a time limit no query beats.

The in-process sandbox (:mod:`pipesql.sql.execute`) stops a query between SQLite VM steps, but
some built-in functions do all their work inside one step, where neither the progress handler
nor ``interrupt()`` reaches, and several such calls in one expression run back to back. Here
the same :func:`~pipesql.sql.execute.execute` runs in a child process; when no answer has come
``KILL_GRACE_S`` after the deadline, the child is killed (SIGKILL) and the caller gets
:class:`~pipesql.sql.execute.QueryTimeout`, whatever the query was doing.

The same children run a whole function of the caller's where that function runs SQL it did not
write on databases it builds in memory (:func:`call_isolated`: evaluate's test-suite step runs a
prediction on generated variants), so one deadline bounds all of it.

Children are started once per process and reused across databases and callers (at most
``MAX_CHILDREN`` at once; a caller beyond that waits for one). A killed child is replaced on the
next query. Each child caps SQLite's heap (``PRAGMA hard_heap_limit``), so one query cannot
take the machine's memory either. Children are plain subprocesses, not multiprocessing ones,
so daemonic pool workers (validate, generate) may use them too.

    >>> db = connect_isolated(path)          # doctest: +SKIP
    >>> execute(db, "SELECT 1").rows         # doctest: +SKIP
    ((1,),)
"""

from __future__ import annotations

import atexit
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, TypeVar

from pipesql.sql import execute as sandbox

T = TypeVar("T")

# How long after the deadline a child that has not answered is killed. The in-child deadline
# answers first for every query that yields between VM steps; only work inside one step waits
# for the kill.
KILL_GRACE_S = 0.5
MAX_CHILDREN = 4
# SQLite's heap in a child (every connection of it): a sort or a hash table past this fails with
# "out of memory" instead of swapping the host.
HEAP_LIMIT_BYTES = 1 << 30
_OPEN_PER_CHILD = 8
_START_TIMEOUT_S = 60.0
_ERRORS = {cls.__name__: cls for cls in (sandbox.QueryTimeout, sandbox.QueryRefused, sandbox.QueryError,
                                         sandbox.DatabaseError)}


class IsolatedDatabase:
    """A database whose queries run in a child process (see the module docstring). Pass it to
    :func:`pipesql.sql.execute.execute` like a connection; it holds nothing open itself."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise sandbox.DatabaseError(f"database not found: {self.path}")

    def execute(self, sql: str, *, timeout_s: float, row_cap: int, max_bytes: int) -> sandbox.QueryResult:
        sandbox.require_query(sql)  # remembered per text: free after execute()'s own check
        return _pool.run(("query", str(self.path.resolve()), sql, timeout_s, row_cap, max_bytes), timeout_s)

    def close(self) -> None:
        """Nothing to close: the children belong to the process, not to one database."""


def connect_isolated(path: str | Path) -> IsolatedDatabase:
    """A handle on ``path`` for :func:`~pipesql.sql.execute.execute`; raises
    :class:`~pipesql.sql.execute.DatabaseError` if the file is not there."""
    return IsolatedDatabase(path)


def call_isolated(function: Callable[..., T], *args, timeout_s: float) -> T:
    """``function(*args)`` in a child process killed ``KILL_GRACE_S`` after ``timeout_s``
    (:class:`~pipesql.sql.execute.QueryTimeout`). ``function`` is sent by name, so it must be a
    module-level function of an importable module, and its arguments and result must pickle.
    Its query errors come back as they were raised; any other error as a
    :class:`~pipesql.sql.execute.QueryError` naming it."""
    return _pool.run(("call", function, args), timeout_s)


class ChildLost(sandbox.QueryError):
    """The child ended without answering (killed from outside, out of memory): like a
    timeout, it says more about the machine than about the query."""


class _Overran(Exception):
    pass


class _Child:
    """One child process and the channel to it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "pipesql.sql.isolated", str(theirs.fileno())],
                                        pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                        close_fds=True)
        theirs.close()
        self.channel = Connection(ours.detach())
        # The child answers once it has started: a query's clock starts after that.
        if not self.channel.poll(_START_TIMEOUT_S) or self.channel.recv() != ("ready",):
            self.kill()
            raise sandbox.QueryError("the query process did not start")

    def ask(self, request: tuple, wait_s: float) -> tuple:
        self.channel.send(request)
        if not self.channel.poll(wait_s):
            raise _Overran()
        return self.channel.recv()

    def kill(self) -> None:
        try:
            self.process.kill()
        except ProcessLookupError:
            pass
        self.process.wait()
        self.channel.close()


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CHILDREN)
        self._idle: list[_Child] = []
        self._pid = os.getpid()

    def _take(self) -> _Child:
        with self._lock:
            if self._pid != os.getpid():  # a forked process: the parent's children are not ours
                self._pid, self._idle = os.getpid(), []
            if self._idle:
                return self._idle.pop()
        return _Child()

    def _replace(self) -> None:
        """Start a child in place of a killed one, in the background, so the next caller does
        not pay for its start."""

        def start() -> None:
            try:
                child = _Child()
            except sandbox.QueryError:
                return
            with self._lock:
                self._idle.append(child)

        threading.Thread(target=start, name="pipesql-sql-restart", daemon=True).start()

    def run(self, request: tuple, timeout_s: float) -> sandbox.QueryResult:
        with self._slots:
            child = self._take()
            try:
                reply = child.ask(request, timeout_s + KILL_GRACE_S)
            except _Overran:
                child.kill()
                self._replace()
                raise sandbox.QueryTimeout(f"query exceeded {timeout_s:g} s") from None
            except (EOFError, OSError):
                child.kill()
                self._replace()
                raise ChildLost("the query's process ended without an answer (out of memory?)") from None
            with self._lock:
                self._idle.append(child)
        if reply[0] == "ok":
            return reply[1]
        raise _ERRORS.get(reply[1], sandbox.QueryError)(reply[2])


    def close(self) -> None:
        """End the idle children (their channel closes, they exit) and wait for them."""
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.channel.close()
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()


_pool = _Pool()
atexit.register(_pool.close)


# --- the child -----------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """End this child when its parent process ends, even in the middle of a query. (Not
    PR_SET_PDEATHSIG: that fires when the parent's *thread* ends, and servers start children
    from pool threads that come and go.)"""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="pipesql-sql-parent", daemon=True).start()


def _answer(channel: Connection) -> None:
    import sqlite3

    _die_with_parent()
    sqlite3.connect(":memory:").execute(f"PRAGMA hard_heap_limit = {HEAP_LIMIT_BYTES}")
    channel.send(("ready",))
    opened: OrderedDict[str, object] = OrderedDict()
    while True:
        try:
            message = channel.recv_bytes()
        except EOFError:
            return
        try:
            request = pickle.loads(message)  # here, so a function that cannot be imported fails only its call
            if request[0] == "call":
                _, function, args = request
                channel.send(("ok", function(*args)))
            else:
                channel.send(("ok", _query(opened, *request[1:])))
        except (sandbox.QueryError, sandbox.DatabaseError) as error:
            channel.send(("error", type(error).__name__, str(error)))
        except Exception as error:  # a value that cannot be sent, ...: the request fails, the child goes on
            channel.send(("error", "QueryError", f"{type(error).__name__}: {error}"))


def _query(opened: OrderedDict, path: str, sql: str, timeout_s: float, row_cap: int,
           max_bytes: int) -> sandbox.QueryResult:
    """One query on one of the child's read-only connections (the latest ``_OPEN_PER_CHILD`` stay open)."""
    if path not in opened:
        opened[path] = sandbox.connect_readonly(path)
        while len(opened) > _OPEN_PER_CHILD:
            opened.popitem(last=False)[1].close()
    opened.move_to_end(path)
    # The parent gated the text (execute() does before it hands it over); the authorizer holds here too.
    return sandbox.run_query(opened[path], sql, timeout_s=timeout_s, row_cap=row_cap, max_bytes=max_bytes)


if __name__ == "__main__":
    _answer(Connection(int(sys.argv[1])))
