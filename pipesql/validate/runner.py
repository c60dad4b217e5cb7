"""Validate many items over all cores, each item within a hard time budget.

Items are grouped by database and cut into chunks, so a worker keeps one database's connection,
schema and ZetaSQL catalog warm across a chunk, and an item whose gold query it checked before
(Spider asks most twice) copies that outcome (:class:`~pipesql.validate.check.CheckMemo`). Workers are spawned (not forked), each with
its own caches and its own ZetaSQL instance; the parent compiles the ZetaSQL module once before
they start, so they only load it.

Gold SQL and database files are untrusted, and some SQLite built-ins do all their work inside one
VM step, where the per-query time limit does not reach. So the check always runs in worker
processes (one with ``workers=1``), each telling the parent when it starts an item; a worker
whose item runs past :meth:`~pipesql.validate.check.CheckOptions.item_budget_s` is killed, the
item is classed ``TIMEOUT`` (stage ``budget``), a new worker takes the rest of its chunk, and the
batch goes on. A worker that dies on an item (out of memory) costs that item alike, as
``INTERNAL_ERROR``.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Iterable, Sequence

from pipesql.config.machine import usable_cores
from pipesql.corpora.items import Item
from pipesql.progress import progress_bar
from pipesql.validate.check import CheckMemo, CheckOptions, DatabaseCache, check_item, crash_record, overrun_record

CHUNK_SIZE = 24


def _serve(channel: Connection, options: CheckOptions, witness_dir: Path | None) -> None:
    """A worker: check each chunk it is sent, saying ``("start", index)`` before each item and
    ``("done", index, record)`` after it; end when the parent closes the channel."""
    databases, memo = DatabaseCache(), CheckMemo()
    while True:
        try:
            chunk = channel.recv()
        except EOFError:
            return
        for index, item in chunk:
            channel.send(("start", index))
            channel.send(("done", index, check_item(item, options, databases, memo, witness_dir)))


class _Worker:
    """One worker process, the items of its chunk not done yet, and the one it is checking."""

    def __init__(self, context, options: CheckOptions, witness_dir: Path | None) -> None:
        self.channel, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, options, witness_dir), daemon=True)
        self.process.start()
        theirs.close()
        self.pending: dict[int, Item] = {}
        self.current: int | None = None
        self.started = 0.0

    def assign(self, chunk: list[tuple[int, Item]]) -> None:
        self.pending, self.current = dict(chunk), None
        self.channel.send(chunk)

    def blamed(self) -> int:
        """The item a dead worker is charged with: the one it was checking, else its next one
        (so a worker that keeps dying still moves the batch on)."""
        return self.current if self.current is not None else next(iter(self.pending))

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.channel.close()


class OneWorker:
    """One supervised worker process for a caller that hands over one item at a time (the ray
    engine's actors): the same budget kill as :func:`validate_items`, the worker kept across
    items (its caches stay warm) and replaced after a kill."""

    def __init__(self, options: CheckOptions, witness_dir: Path | None = None):
        self.options, self.witness_dir = options, witness_dir
        self.budget_s = options.item_budget_s()
        self._worker: _Worker | None = None

    def check(self, item: Item) -> dict[str, Any]:
        worker = self._worker = self._worker or _Worker(multiprocessing.get_context("spawn"), self.options,
                                                        self.witness_dir)
        worker.assign([(0, item)])
        try:
            worker.channel.recv()  # ("start", 0): the clock starts when the worker does, not while it starts up
            started = time.monotonic()
            if worker.channel.poll(self.budget_s):
                return worker.channel.recv()[2]
            record = overrun_record(item, self.budget_s, seconds=time.monotonic() - started)
        except (EOFError, OSError):
            record = crash_record(item, "the worker process ended while checking this item (out of memory?)")
        self.close()
        return record

    def close(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None


def chunks_by_database(items: Sequence[Item], size: int = CHUNK_SIZE) -> list[list[tuple[int, Item]]]:
    """``(index, item)`` chunks of at most ``size``, each holding items of one database; big
    databases' chunks first, so the slowest work does not start last."""
    by_db: dict[str, list[tuple[int, Item]]] = {}
    for index, item in enumerate(items):
        by_db.setdefault(str(item.db_path), []).append((index, item))
    chunks = [group[i : i + size] for group in by_db.values() for i in range(0, len(group), size)]
    return sorted(chunks, key=len, reverse=True)


def validate_items(items: Iterable[Item], *, workers: int | None = None, options: CheckOptions | None = None,
                   progress: bool = True, witness_dir: Path | None = None) -> list[dict[str, Any]]:
    """The validation record of every item, in the items' order (see
    :func:`pipesql.validate.check.check_item`), checked in ``workers`` processes (see the module
    docstring). ``options`` may be the validate stage's settings (they extend :class:`CheckOptions`)."""
    options = options or CheckOptions()
    items = list(items)
    workers = max(1, min(workers or usable_cores(), len(items) or 1))
    records: list[dict[str, Any] | None] = [None] * len(items)
    if not items:
        return []
    if options.googlesql:
        prepare_googlesql()
    with progress_bar(len(items), "validate", "item", disable=not progress) as bar:
        for index, record in _supervised(chunks_by_database(items), workers, options, witness_dir):
            records[index] = record
            bar.update(1)
    return [r for r in records if r is not None]


def _supervised(chunks: list[list[tuple[int, Item]]], workers: int, options: CheckOptions,
                witness_dir: Path | None) -> Iterable[tuple[int, dict[str, Any]]]:
    """``(index, record)`` of every chunk's items as workers finish them; a worker past an item's
    budget is killed and replaced, the item classed, the rest of its chunk given to the new one."""
    context = multiprocessing.get_context("spawn")
    budget_s = options.item_budget_s()
    todo = deque(chunks)
    busy: dict[Connection, _Worker] = {}

    def start(chunk: list[tuple[int, Item]]) -> None:
        worker = _Worker(context, options, witness_dir)
        worker.assign(chunk)
        busy[worker.channel] = worker

    try:
        while todo and len(busy) < workers:
            start(todo.popleft())
        while busy:
            now = time.monotonic()
            deadlines = [w.started + budget_s - now for w in busy.values() if w.current is not None]
            for channel in wait(list(busy), timeout=max(0.0, min(deadlines, default=1.0))):
                worker = busy[channel]
                try:
                    message = channel.recv()
                except (EOFError, OSError):
                    index = worker.blamed()
                    yield index, crash_record(worker.pending[index], "the worker process ended while checking "
                                                                     "this item (out of memory?)")
                    _restart(busy, worker, index, start)
                    continue
                if message[0] == "start":
                    worker.current, worker.started = message[1], time.monotonic()
                    continue
                _, index, record = message
                del worker.pending[index]
                worker.current = None
                yield index, record
                if not worker.pending:
                    if todo:
                        worker.assign(todo.popleft())
                    else:
                        del busy[channel]
                        worker.channel.close()
                        worker.process.join()
            now = time.monotonic()
            for worker in [w for w in busy.values() if w.current is not None and now - w.started > budget_s]:
                index = worker.current
                yield index, overrun_record(worker.pending[index], budget_s, seconds=now - worker.started)
                _restart(busy, worker, index, start)
    finally:
        for worker in busy.values():
            worker.kill()


def _restart(busy: dict[Connection, _Worker], worker: _Worker, lost: int, start) -> None:
    """Kill ``worker`` (its item ``lost`` is recorded already) and give the rest of its chunk to
    a new one."""
    del busy[worker.channel]
    worker.kill()
    rest = [(i, item) for i, item in worker.pending.items() if i != lost]
    if rest:
        start(rest)


def prepare_googlesql() -> None:
    # Compile (or find) the cached ZetaSQL module once here, so workers never compile it side by side.
    try:
        from pipesql.sql import googlesql

        googlesql.ensure_compiled()
    except Exception as error:  # workers will record the engine as unavailable
        print(f"warning: GoogleSQL check unavailable: {type(error).__name__}: {error}", file=sys.stderr)
